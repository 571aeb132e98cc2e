"""Rules reading another staged dataset of the run (``in_dataset``, ``sql`` subqueries) on warehouse staging tables."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, StageResult, parse_quality_rules
from airflow_agent_provider.engines.quarantine import quarantine_dataset
from airflow_agent_provider.engines.validate import validate_dataset
from tests.warehouse.pairs import keep_rows_in_the_warehouse, stage_both, uri_makers

RULES = parse_quality_rules(
    [
        {"rule": "not_null", "column": "user_id"},
        {"rule": "in_dataset", "column": "user_id", "dataset": "users", "dataset_column": "user_id"},
        {"rule": "in_dataset", "column": "user_id", "dataset": "users", "dataset_column": "no_such"},
        {"rule": "sql", "name": "known_user", "predicate": "user_id IS NULL OR user_id IN (SELECT user_id FROM users)"},
    ]
)
MISSING_USER = "events.user_id: 1 rows whose value is not in users.user_id, e.g. 99"


@pytest.fixture
def both(warehouse: sa.Engine, staging_root: str) -> tuple[dict[str, DatasetRef], dict[str, DatasetRef]]:
    return stage_both(warehouse, staging_root)


def validate(datasets: dict[str, DatasetRef], **kwargs: Any) -> StageResult:
    others = kwargs.pop("others") if "others" in kwargs else {"users": datasets["users"]}
    return validate_dataset(datasets["events"], dataset="events", quality_rules=RULES, others=others, **kwargs)


def dumped(result: StageResult) -> list[dict[str, Any]]:
    return [issue.model_dump(mode="json") for issue in result.issues]


def test_the_same_issues_and_samples_as_on_parquet(both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]]) -> None:
    parquet, tables = both

    on_duckdb, in_warehouse = validate(parquet), validate(tables)

    assert dumped(in_warehouse) == dumped(on_duckdb)
    assert [i.type for i in in_warehouse.issues] == [
        "not_null_violation", "value_not_in_dataset", "rule_error", "sql_predicate_failed",
    ]  # fmt: skip
    assert in_warehouse.issues[1].message == MISSING_USER and in_warehouse.issues[1].sample == [99]
    assert in_warehouse.metrics["referenced_datasets"]["users"]["uri"] == tables["users"].uri


def test_no_row_passes_through_the_worker(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tables = both
    seen = keep_rows_in_the_warehouse(monkeypatch)

    result = validate(tables)

    assert [i.affected_rows for i in result.issues if i.type == "value_not_in_dataset"] == [1]
    assert seen and max(seen) <= 5


def test_quarantine_validates_its_rows_against_the_same_datasets(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], staging_root: str
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "quarantine")
    rules = [rule for rule in RULES if rule.dataset_column != "no_such"]

    def run(datasets: dict[str, DatasetRef], uri_for: Any) -> StageResult:
        validation = validate_dataset(
            datasets["events"], dataset="events", quality_rules=rules, others={"users": datasets["users"]}
        )
        return quarantine_dataset(validation, uri_for=uri_for, quality_rules=rules)

    on_duckdb, in_warehouse = run(parquet, to_folder), run(tables, to_table)

    assert in_warehouse.status == on_duckdb.status == "fail"  # the unknown user 99 is no row rule's: it stays
    assert dumped(in_warehouse) == dumped(on_duckdb)
    assert [i.type for i in in_warehouse.issues] == ["value_not_in_dataset", "sql_predicate_failed"]
    assert in_warehouse.issues[0].message == MISSING_USER
    assert in_warehouse.metrics["rows_quarantined"] == on_duckdb.metrics["rows_quarantined"] == 2


@pytest.mark.parametrize("events_in", ["warehouse", "parquet"])
def test_a_parquet_and_warehouse_pair_is_refused_with_the_way_out(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], events_in: str
) -> None:
    parquet, tables = both
    events, users = (tables, parquet) if events_in == "warehouse" else (parquet, tables)

    with pytest.raises(
        ValueError, match=r"in_dataset\(user_id\): in_dataset compares events .* both must be staged"
    ) as refused:
        validate({"events": events["events"]}, others={"users": users["users"]})
    assert events["events"].uri in str(refused.value) and users["users"].uri in str(refused.value)


def test_a_table_of_another_warehouse_is_refused(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], warehouse: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_agent_provider.engines import warehouse_staging as ws

    _, tables = both
    elsewhere = tables["users"].model_copy(update={"uri": tables["users"].uri.replace("//wh/", "//other/")})
    other = sa.create_engine(warehouse.url.set(database="template1"))
    made = ws._CONNECTOR.make
    monkeypatch.setattr(ws._CONNECTOR, "make", lambda conn_id: other if conn_id == "other" else made(conn_id))  # type: ignore[misc]
    try:
        with pytest.raises(
            ValueError, match=r"with users \(postgres://other/.*\), a staging table in another warehouse"
        ):
            validate(tables, others={"users": elsewhere})
        sql_only = [rule for rule in RULES if rule.rule == "sql"]  # a predicate reads only what is beside the data
        result = validate_dataset(
            tables["events"], dataset="events", quality_rules=sql_only, others={"users": elsewhere}
        )
        assert [i.type for i in result.issues] == ["rule_error"] and "users" in result.issues[0].message
    finally:
        other.dispose()
