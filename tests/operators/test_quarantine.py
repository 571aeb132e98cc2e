"""QuarantineOperator called directly: real staged data, real validations, real SQLite and PostgreSQL tables."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from airflow_agent_provider.contracts import StageResult, parse_quality_rules
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.operators.errors import StageFailed
from airflow_agent_provider.operators.quarantine import QuarantineFailed, QuarantineOperator
from tests.support.operators import direct_context

EVENTS = pd.DataFrame(
    {
        "event_id": [1, 2, 3, 4, 5, 6],
        "user_id": pd.array([10, None, 12, 13, None, 15], dtype="Int64"),
        "event_type": ["click", "click", "bogus", "view", "click", "view"],
        "revenue": [1.0, 2.0, 3.0, -4.0, 5.0, 6.0],
    }
)
SCHEMA = {"event_id": "integer", "user_id": "integer", "event_type": "string", "revenue": "float"}
RULES = [
    {"column": "event_id", "rule": "unique"},
    {"column": "user_id", "rule": "not_null"},
    {"column": "event_type", "rule": "in_list", "values": ["click", "view"]},
    {"column": "revenue", "rule": "range", "min": 0},
]
BAD_IDS = [2, 3, 4, 5]


def validation(staging_root: str, name: str, frame: pd.DataFrame, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A real validation result of ``frame`` staged as ``name``, as XCom carries it."""
    writer = staging.DatasetWriter(f"{staging_root}/extract/{name}")
    writer.write(frame)
    ref = writer.finish()
    result = validate_dataset(ref, dataset=name, expected_schema=None, quality_rules=parse_quality_rules(rules))
    result.task_id = f"validate_{name}"
    return result.to_xcom()


def operator(staging_root: str, validations: Any, **kwargs: Any) -> QuarantineOperator:
    return QuarantineOperator(
        task_id="quarantine",
        validation=validations,
        dataset="events",
        expected_schema=SCHEMA,
        quality_rules=RULES,
        staging_root=staging_root,
        **kwargs,
    )


def table_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(row) for row in con.exec_driver_sql(sql).fetchall()]
    finally:
        engine.dispose()


def has_table(url: str, table: str) -> bool:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).has_table(table)
    finally:
        engine.dispose()


class TestQuarantineOperator:
    def test_bad_rows_go_to_the_quarantine_table_once_however_often_it_runs(
        self, sqlite_url: str, staging_root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = sqlite_url
        monkeypatch.setenv("AIRFLOW_CONN_QUARANTINE_DB", url)
        validations = [validation(staging_root, "events", EVENTS, RULES)]
        op = operator(staging_root, validations, quarantine_conn_id="quarantine_db", quarantine_key=["event_id"])

        first = StageResult.model_validate(op.execute(direct_context("quarantine")))
        op.execute(direct_context("quarantine"))

        assert (first.stage, first.status, first.task_id) == ("quarantine", "pass", "quarantine")
        assert first.datasets["events"].row_count == 2 and first.datasets["events_quarantine"].row_count == 4
        metrics = first.metrics
        assert (metrics["rows_before"], metrics["rows_after"], metrics["rows_quarantined"]) == (6, 2, 4)
        assert (metrics["quarantine_table"], metrics["quarantine_rows_loaded"]) == ("events_quarantine", 4)
        assert "rows_loaded" not in metrics  # the report sums rows_loaded: quarantined rows are not loaded rows
        rows = table_rows(url, "SELECT event_id, user_id, event_type, revenue FROM events_quarantine ORDER BY 1")
        assert rows == [("2", None, "click", "2.0"), ("3", "12", "bogus", "3.0"), ("4", "13", "view", "-4.0"),
                        ("5", None, "click", "5.0")]  # fmt: skip
        run = table_rows(
            url,
            "SELECT event_id, quarantine_rule, quarantine_dag_id, quarantine_run_id, quarantine_task_id, "
            "quarantine_data_interval FROM events_quarantine ORDER BY 1",
        )
        ids = ("op_direct", "manual__2026-11-10T00:00:00+00:00", "quarantine")
        interval = "2026-11-09T00:00:00+00:00/2026-11-10T00:00:00+00:00"
        assert run == [
            ("2", "user_id is_null", *ids, interval),
            ("3", "event_type not_in_list", *ids, interval),
            ("4", "revenue lt", *ids, interval),
            ("5", "user_id is_null", *ids, interval),
        ]

    def test_another_failed_validation_fails_the_task_and_writes_nothing(
        self, sqlite_url: str, staging_root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_QUARANTINE_DB", sqlite_url)
        users = pd.DataFrame({"user_id": [10, 12, 12]})
        validations = [
            validation(staging_root, "events", EVENTS, RULES),
            validation(staging_root, "users", users, [{"column": "user_id", "rule": "unique"}]),
        ]
        context = direct_context("quarantine")

        with pytest.raises(QuarantineFailed, match=r"quarantining 4 row\(s\) of 'events', 1 issue\(s\) remain") as err:
            operator(staging_root, validations, quarantine_conn_id="quarantine_db").execute(context)

        assert err.value.remaining_issues == ["users.user_id: 2 rows share 1 duplicated values, e.g. 12"]
        pushed = StageResult.model_validate(context["ti"].pushed["return_value"])
        assert pushed.status == "fail" and pushed.metrics["rows_quarantined"] == 4
        assert not has_table(sqlite_url, "events_quarantine")

    def test_an_issue_quarantine_cannot_express_fails_without_retry(self, staging_root: str) -> None:
        duplicated = EVENTS.assign(event_id=[1, 2, 3, 4, 5, 1])
        validations = validation(staging_root, "events", duplicated, RULES)

        with pytest.raises(QuarantineFailed, match=r"events.event_id: 2 rows share 1 duplicated values") as err:
            operator(staging_root, validations).execute(direct_context("quarantine"))

        assert isinstance(err.value, AirflowFailException)

    def test_a_passing_validation_passes_through_without_touching_the_warehouse(
        self, sqlite_url: str, staging_root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_QUARANTINE_DB", sqlite_url)
        clean = EVENTS.drop(index=[i - 1 for i in BAD_IDS])
        given = validation(staging_root, "events", clean, RULES)

        result = operator(staging_root, given, quarantine_conn_id="quarantine_db").execute(direct_context("quarantine"))

        assert result["status"] == "pass" and result["datasets"] == given["datasets"]
        assert result["metrics"]["rows_quarantined"] == 0
        assert not has_table(sqlite_url, "events_quarantine")

    def test_an_unknown_dataset_fails_naming_what_the_validations_hold(self, staging_root: str) -> None:
        given = validation(staging_root, "events", EVENTS, RULES)
        op = operator(staging_root, given)
        op.dataset = "orders"

        with pytest.raises(StageFailed, match="no upstream dataset named 'orders'; upstream holds"):
            op.execute(direct_context("quarantine"))
