"""Fix plans applied inside the warehouse on the real PostgreSQL: the DuckDB path's semantics, as SQL there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.agents.calls import CallPolicy
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.remediation import RemediationRequest, remediate
from airflow_agent_provider.contracts import DatasetRef, FixPlan, StageResult, parse_quality_rules
from airflow_agent_provider.engines.remediate import apply_fix_plan
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.exceptions import FixPlanNotApplicable
from airflow_agent_provider.testing import FakeClaude, Reply
from tests.agents.support import KEY
from tests.warehouse.pairs import keep_rows_in_the_warehouse, rows_of, stage_both, uri_makers

ACTIONS: list[dict[str, Any]] = [
    {"action": "rename_column", "column": "code", "to": "event_code"},
    {"action": "cast_column", "column": "amount", "to_type": "float"},  # 'x' does not convert: NULL, counted
    {"action": "cast_column", "column": "day", "to_type": "date", "format": "%d/%m/%Y"},  # '2024-01-03' neither
    {"action": "cast_column", "column": "event_id", "to_type": "string"},
    {"action": "fill_default", "column": "revenue", "value": 0},
    {"action": "drop_rows", "rule": {"column": "user_id", "op": "is_null"}},
    {"action": "quarantine_rows", "rule": {"column": "event_type", "op": "not_in_list", "value": ["click", "view"]},
     "target": "events_bad"},
    {"action": "quarantine_rows", "rule": {"column": "event_code", "op": "regex_mismatch", "value": r"^A\d+$"},
     "target": "events_bad"},
    {"action": "quarantine_rows", "rule": {"column": "revenue", "op": "gt", "value": 100}, "target": "events_high"},
]  # fmt: skip


@pytest.fixture
def both(warehouse: sa.Engine, staging_root: str) -> tuple[dict[str, DatasetRef], dict[str, DatasetRef]]:
    return stage_both(warehouse, staging_root)


def apply(ref: DatasetRef, actions: list[dict[str, Any]], uri_for: Any) -> tuple[StageResult, dict[str, DatasetRef]]:
    plan = FixPlan.model_validate({"actions": actions})
    return apply_fix_plan(ref, plan, output_uri=uri_for("events_fix1"), quarantine_uri=uri_for)


def test_the_plan_in_the_warehouse_equals_the_duckdb_plan(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], warehouse: sa.Engine, staging_root: str
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "remediate")

    on_duckdb, bad_duckdb = apply(parquet["events"], ACTIONS, to_folder)
    in_warehouse, bad_warehouse = apply(tables["events"], ACTIONS, to_table)

    assert in_warehouse.metrics == on_duckdb.metrics
    assert in_warehouse.metrics["cast_failures"] == {"amount": 1, "day": 1, "event_id": 0}
    assert (in_warehouse.metrics["rows_dropped"], in_warehouse.metrics["rows_quarantined"]) == (2, 4)
    assert sorted(in_warehouse.datasets) == sorted(on_duckdb.datasets) == ["events_bad", "events_fix1", "events_high"]
    for name, ref in in_warehouse.datasets.items():
        assert ref.uri == to_table(name)
        assert ref.columns == on_duckdb.datasets[name].columns, name
        assert rows_of(ref, warehouse) == rows_of(on_duckdb.datasets[name], warehouse), name
    assert sorted(bad_warehouse) == sorted(bad_duckdb)
    fixed = rows_of(in_warehouse.datasets["events_fix1"], warehouse, "event_id, amount, day, event_code")
    assert fixed == [  # event_id is text now, sorted as text; row 3 ('x', '2024-01-03') was quarantined
        ("1", 1.5, date(2024, 1, 1), "A1"),
        ("10", None, date(2024, 1, 10), "A10"),
        ("4", 4.0, date(2024, 1, 4), "A4"),
        ("9", 9.0, date(2024, 1, 9), "A9"),
    ]


def test_no_row_passes_through_the_worker(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], staging_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tables = both
    seen = keep_rows_in_the_warehouse(monkeypatch, most=1)  # counts only: a fix plan fetches no rows at all

    result, quarantined = apply(tables["events"], ACTIONS, uri_makers(staging_root, "remediate")[1])

    assert result.metrics["rows_after"] == 4 and sorted(quarantined) == ["events_bad", "events_high"]
    assert seen and max(seen) == 1


@pytest.mark.parametrize(
    ("action", "why"),
    [
        pytest.param(
            {"action": "cast_column", "column": "no_such", "to_type": "float"},
            r"action #1 \(cast_column\): column 'no_such' does not exist \(columns: event_id, user_id",
            id="missing-column",
        ),
        pytest.param(
            {"action": "drop_rows", "rule": {"column": "user_id", "op": "equals", "value": "abc"}},
            r"action #1 \(drop_rows\): value 'abc' is not a valid BIGINT for 'user_id'",
            id="value-of-another-type",
        ),
        pytest.param(
            {"action": "rename_column", "column": "code", "to": "AMOUNT"},
            r"cannot rename 'code', 'amount' already exists",
            id="rename-onto-another-column",
        ),
    ],
)
def test_a_plan_that_does_not_fit_fails_alike_before_anything_is_staged(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]],
    warehouse: sa.Engine,
    staging_root: str,
    action: dict[str, Any],
    why: str,
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "remediate")

    with pytest.raises(FixPlanNotApplicable, match=why) as on_duckdb:
        apply(parquet["events"], [action], to_folder)
    with pytest.raises(FixPlanNotApplicable, match=why) as in_warehouse:
        apply(tables["events"], [action], to_table)

    assert str(in_warehouse.value).split(":")[0] == str(on_duckdb.value).split(":")[0]
    with warehouse.connect() as conn:
        made = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'agent_staging' AND tablename LIKE '%%events_fix1'"
        ).scalar()
    assert made == 0


def test_a_missing_staging_table_is_named(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], staging_root: str
) -> None:
    _, tables = both
    to_table = uri_makers(staging_root, "remediate")[1]
    gone = tables["events"].model_copy(update={"uri": to_table("gone")})

    with pytest.raises(
        FixPlanNotApplicable, match=r"staging table postgres://wh/agent_staging\..*_gone does not exist"
    ):
        apply(gone, ACTIONS[:1], to_table)


FORGIVING = [
    pytest.param("try_strptime($v, '%d/%m/%Y')", ["", "2024-01-03", "01/01/2024", "1/1/2024", "01/01/2024 x",
                                                  "31/02/2024", "ab/01/2024"], id="strptime"),
    pytest.param("TRY_CAST($v AS BIGINT)", ["12", " 7 ", "x", "", "99999999999999999999", "-3", "+5",
                                            "999999999999999999", "1.5", "2.5", "-2.5", "1e3", "--1"], id="bigint"),
    pytest.param("TRY_CAST($v AS DOUBLE)", ["1.5", "1e3", "x", "", "-0.25", "7.", ".5", "1.2.3", "+",
                                            "123456789012345678901234567890123"], id="double"),
    pytest.param("TRY_CAST($v AS DATE)", ["2024-01-03", "2024-02-30", "x", ""], id="date"),
    pytest.param("TRY_CAST($v AS BOOLEAN)", ["true", "false", "maybe", "", "TRUE"], id="boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "values"), FORGIVING)
def test_a_value_that_does_not_convert_is_null_in_both(
    warehouse: sa.Engine, expression: str, values: list[str]
) -> None:
    from airflow_agent_provider.engines import staging
    from airflow_agent_provider.engines.warehouse_sql import WarehouseCursor

    duck, cursor = staging.connect(), WarehouseCursor(warehouse)
    column = expression.replace("$v", "v")  # a column, not a literal: the sure-shape path is taken where it fits
    try:
        for value in values:
            want = duck.execute(f"SELECT {expression}", {"v": value}).fetchall()
            assert cursor.execute(f"SELECT {expression}", {"v": value}).fetchall() == want, value
            assert cursor.execute(f"SELECT {column} FROM (SELECT $v AS v) AS t", {"v": value}).fetchall() == want, value
    finally:
        duck.close()
        cursor.close()


@pytest.fixture
def claude() -> Iterator[tuple[FakeClaude, Claude]]:
    """The real SDK client on FakeClaude, as the operators build it."""
    import anthropic

    with FakeClaude(api_key=KEY) as fake:
        client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0, timeout=10.0)
        yield fake, Claude.of(client, policy=CallPolicy(backoff_s=0.02, deadline_s=20))


def test_the_remediation_loop_fixes_a_staging_table_in_the_warehouse(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]],
    warehouse: sa.Engine,
    staging_root: str,
    claude: tuple[FakeClaude, Claude],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claude's plans (FakeClaude) applied and re-validated in the warehouse, against the run's users table."""
    _, tables = both
    schema = {"event_id": "integer", "amount": "float"}
    rules = parse_quality_rules(
        [{"rule": "in_dataset", "column": "user_id", "dataset": "users", "dataset_column": "user_id"}]
    )
    validation = validate_dataset(
        tables["events"], dataset="events", expected_schema=schema, quality_rules=rules, allow_extra_columns=True,
        others={"users": tables["users"]},
    )  # fmt: skip
    assert [i.type for i in validation.issues] == ["schema_mismatch", "value_not_in_dataset"]
    request = RemediationRequest(
        dataset="events", ref=tables["events"], validation=validation, uri_for=uri_makers(staging_root, "remediate")[1],
        output_dataset="events", expected_schema=schema, quality_rules=rules,
    )  # fmt: skip
    cast = {"action": "cast_column", "column": "amount", "to_type": "float"}
    unknown = {"action": "quarantine_rows", "rule": {"column": "user_id", "op": "equals", "value": 99},
               "target": "events_unknown_user"}  # fmt: skip
    fake, client = claude
    fake.add(Reply.json({"actions": [cast], "rationale": "cast"}), times=1)
    fake.add(Reply.json({"actions": [unknown], "rationale": "take the unknown user out"}), times=1)
    keep_rows_in_the_warehouse(monkeypatch, most=5)

    outcome = remediate(client, request)

    assert outcome.passed and [i["outcome"] for i in outcome.iterations] == ["fail", "pass"]
    assert outcome.fixed is not None and outcome.fixed.uri == uri_makers(staging_root, "remediate")[1]("events_fix2")
    assert outcome.fixed.row_count == 9 and outcome.fixed.columns["amount"] == "float"
    assert [ref.row_count for ref in outcome.quarantined.values()] == [1]
    assert rows_of(outcome.quarantined["events_unknown_user"], warehouse, "event_id, user_id") == [(10, 99)]
