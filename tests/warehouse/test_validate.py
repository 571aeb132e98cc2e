"""Warehouse-native validation on the real PostgreSQL: the same issues and samples as the Parquet path."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, parse_quality_rules, parse_sources
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.engines.validate import validate_dataset

REFERENCE = datetime(2024, 1, 10, tzinfo=timezone.utc)
EVENTS = """
CREATE TABLE events (event_id bigint, user_id bigint, event_type text, amount double precision, event_time timestamp);
INSERT INTO events VALUES
 (1, 10, 'click', 5.0, '2024-01-09 10:00'), (2, 10, 'view', 7.5, '2024-01-09 11:00'),
 (3, 11, 'clik', 300.0, '2024-01-08 09:00'), (4, NULL, 'purchase', -20.0, '2023-11-01 00:00'),
 (5, 12, 'vieww', 1.0, '2024-01-20 00:00'), (5, 12, 'clik', 2.0, '2024-01-09 00:00'),
 (6, 13, 'VIEW', NULL, '2024-01-05 00:00'), (7, 14, NULL, 9.0, '2024-01-06 00:00'),
 (8, 15, 'click', 3.0, '2024-01-07 00:00'), (9, 16, 'view', 4.0, '2024-01-07 12:00');
"""
RULES: list[dict[str, Any]] = [
    {"rule": "not_null", "column": "user_id"},
    {"rule": "unique", "column": "event_id"},
    {"rule": "in_list", "column": "event_type", "values": ["click", "view", "purchase"]},
    {"rule": "range", "column": "amount", "min": 0, "max": 250},
    {"rule": "regex", "column": "event_type", "pattern": "[a-z]+"},
    {"rule": "within_last_n_days", "column": "event_time", "days": 30},
    {"rule": "row_count_between", "min": 1, "max": 5},
    {"rule": "sql", "predicate": "amount < 100 OR amount IS NULL"},
    {"rule": "not_null", "column": "no_such_column"},
]


@pytest.fixture
def both(warehouse: sa.Engine, staging_root: str) -> tuple[DatasetRef, DatasetRef]:
    """The same events staged as Parquet (the COPY read) and as a warehouse table (CREATE TABLE AS)."""
    with warehouse.begin() as conn:
        conn.exec_driver_sql(EVENTS)
    sources = parse_sources([{"name": "events", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM events"}])
    parquet = extract_sources(
        sources, dataset_uri=lambda name: f"{staging_root}/run/{name}", sql_engine=lambda conn_id: warehouse
    )
    table = extract_sources(
        sources,
        dataset_uri=lambda name: "unused",
        sql_engine=lambda conn_id: warehouse,
        warehouse=ws.WarehouseStaging("wh", "agent_staging", "d", "r", "extract"),
    )
    return parquet.datasets["events"], table.datasets["events"]


def validate(ref: DatasetRef, rules: list[dict[str, Any]], **kwargs: Any) -> Any:
    return validate_dataset(
        ref, dataset="events", quality_rules=parse_quality_rules(rules), reference_time=REFERENCE, **kwargs
    )


def comparable(result: Any) -> list[dict[str, Any]]:
    return [issue.model_dump(mode="json") for issue in result.issues]


def test_every_rule_finds_the_same_issues_and_samples(both: tuple[DatasetRef, DatasetRef]) -> None:
    parquet, table = both
    kwargs = {"expected_schema": {"event_id": "integer", "amount": "float"}, "fail_on_null_rate_exceeds": 0.05}
    on_duckdb, in_warehouse = validate(parquet, RULES, **kwargs), validate(table, RULES, **kwargs)

    assert in_warehouse.status == on_duckdb.status == "fail"
    assert comparable(in_warehouse) == comparable(on_duckdb)
    assert len(in_warehouse.issues) >= len(RULES)  # every rule found something here (and the null rates)
    assert {i.type for i in in_warehouse.issues} >= {
        "not_null_violation", "duplicate_values", "value_not_in_list", "out_of_range", "regex_mismatch",
        "stale_values", "row_count_out_of_range", "sql_predicate_failed", "missing_column", "null_rate_exceeded",
    }  # fmt: skip
    for key in ("row_count", "columns", "null_rates", "null_counts", "rules_failed", "schema_match"):
        assert in_warehouse.metrics[key] == on_duckdb.metrics[key], key
    assert in_warehouse.metrics["data_location"] == table.uri


def test_conforming_data_passes_in_the_warehouse(both: tuple[DatasetRef, DatasetRef]) -> None:
    _, table = both
    rules = [
        {"rule": "range", "column": "amount", "min": -100, "max": 1000},
        {"rule": "not_null", "column": "event_id"},
    ]
    result = validate(table, rules)
    assert result.status == "pass", [i.message for i in result.issues]


def test_predicate_runs_read_only_and_may_not_reach_the_server(both: tuple[DatasetRef, DatasetRef]) -> None:
    _, table = both
    rules = [
        {"rule": "sql", "predicate": "pg_read_file('/etc/passwd') IS NOT NULL"},
        {"rule": "sql", "predicate": "current_setting('data_directory') IS NOT NULL"},
        {"rule": "sql", "predicate": "length(table_to_xml('public.events', true, false, '')::text) > 0"},
    ]
    result = validate(table, rules)
    assert [i.type for i in result.issues] == ["rule_error"] * 3
    assert all("not allowed" in str(i.found) for i in result.issues)


def test_schema_mismatch_is_reported_on_a_table(both: tuple[DatasetRef, DatasetRef]) -> None:
    parquet, table = both
    schema = {"event_type": "integer", "missing": "string"}
    on_duckdb, in_warehouse = validate(parquet, [], expected_schema=schema), validate(table, [], expected_schema=schema)
    assert [(i.type, i.column) for i in in_warehouse.issues] == [(i.type, i.column) for i in on_duckdb.issues]
    assert in_warehouse.metrics["schema_match"] is False


def test_a_table_emptied_since_it_was_staged_is_refused(
    warehouse: sa.Engine, both: tuple[DatasetRef, DatasetRef]
) -> None:
    _, table = both
    with warehouse.begin() as conn:  # what crash recovery does to an unlogged staging table
        conn.exec_driver_sql(f"TRUNCATE {ws.StagedTable.parse(table.uri).sql}")
    with pytest.raises(ws.WarehouseStagingError, match="rerun the run from its extract"):
        validate(table, RULES)
