"""Warehouse-native quarantine on the real PostgreSQL: split inside the warehouse, with the Parquet path's results."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, StageResult, parse_quality_rules
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.quarantine import quarantine_dataset
from airflow_agent_provider.engines.quarantine_table import QuarantineRun, quarantine_table_rows
from airflow_agent_provider.engines.validate import validate_dataset
from tests.warehouse.pairs import RUN, keep_rows_in_the_warehouse, rows_of, stage_both, uri_makers

SCHEMA = {"event_id": "integer", "user_id": "integer", "amount": "float"}
RULES = parse_quality_rules(
    [
        {"column": "event_id", "rule": "unique"},
        {"column": "user_id", "rule": "not_null"},
        {"column": "event_type", "rule": "in_list", "values": ["click", "view"]},
        {"column": "revenue", "rule": "range", "min": 0, "max": 100},
        {"column": "code", "rule": "regex", "pattern": r"^A\d+$"},
    ]
)
AT = datetime(2024, 1, 11, 3, 0, tzinfo=timezone.utc)
WHO = QuarantineRun("d", "r", "quarantine", logical_date=AT, data_interval=(AT, AT))


@pytest.fixture
def both(warehouse: sa.Engine, staging_root: str) -> tuple[dict[str, DatasetRef], dict[str, DatasetRef]]:
    return stage_both(warehouse, staging_root)


def validate(ref: DatasetRef, **kwargs: Any) -> StageResult:
    return validate_dataset(ref, dataset="events", expected_schema=SCHEMA, quality_rules=RULES, **kwargs)


def quarantine(validation: StageResult, uri_for: Any, **kwargs: Any) -> StageResult:
    return quarantine_dataset(validation, uri_for=uri_for, quality_rules=RULES, expected_schema=SCHEMA, **kwargs)


def same_result(parquet: StageResult, table: StageResult) -> None:
    assert table.status == parquet.status
    assert [i.model_dump(mode="json") for i in table.issues] == [i.model_dump(mode="json") for i in parquet.issues]
    assert table.warnings == parquet.warnings
    for key in ("rows_before", "rows_after", "rows_quarantined", "quarantined_by", "unhandled_issues", "plan"):
        assert table.metrics[key] == parquet.metrics[key], key
    assert sorted(table.datasets) == sorted(parquet.datasets)
    for name, ref in table.datasets.items():
        assert (ref.row_count, ref.columns) == (parquet.datasets[name].row_count, parquet.datasets[name].columns), name


def test_the_split_in_the_warehouse_equals_the_parquet_split(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], warehouse: sa.Engine, staging_root: str
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "quarantine")

    on_duckdb = quarantine(validate(parquet["events"]), to_folder)
    in_warehouse = quarantine(validate(tables["events"]), to_table)

    same_result(on_duckdb, in_warehouse)
    assert in_warehouse.status == "pass" and in_warehouse.metrics["rows_quarantined"] == 7
    for name in ("events", "events_quarantine"):
        assert in_warehouse.datasets[name].uri == to_table(name)
        assert rows_of(in_warehouse.datasets[name], warehouse) == rows_of(on_duckdb.datasets[name], warehouse), name
    assert rows_of(in_warehouse.datasets["events"], warehouse, "event_id, amount")[0] == (1, 1.5)  # cast to float
    with warehouse.connect() as conn:  # run-scoped staging tables, as the extract's: no WAL
        for name in ("events", "events_quarantine"):
            table = ws.StagedTable.parse(to_table(name)).sql
            assert (
                conn.exec_driver_sql(f"SELECT relpersistence FROM pg_class WHERE oid = '{table}'::regclass").scalar()
                == "u"
            )


def test_no_row_passes_through_the_worker(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], staging_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, tables = both
    validation = validate(tables["events"])
    seen = keep_rows_in_the_warehouse(monkeypatch, most=1)  # counts only: the clean rows pass, nothing is sampled

    result = quarantine(validation, uri_makers(staging_root, "quarantine")[1])

    assert result.status == "pass" and result.metrics["rows_after"] == 3
    assert seen and max(seen) == 1


def test_a_rerun_leaves_the_same_tables_and_retention_drops_them(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], warehouse: sa.Engine, staging_root: str
) -> None:
    _, tables = both
    to_table = uri_makers(staging_root, "quarantine")[1]
    first = quarantine(validate(tables["events"]), to_table)
    again = quarantine(validate(tables["events"]), to_table)

    assert {n: r.checksum for n, r in again.datasets.items()} == {n: r.checksum for n, r in first.datasets.items()}
    patterns = ws.run_table_patterns(*RUN, [ref.uri for ref in first.datasets.values()])
    dropped = [name for pattern in patterns for name in ws.drop_tables_matching(pattern)]
    assert {ws.StagedTable.parse(ref.uri).table for ref in first.datasets.values()} <= set(dropped)


def test_quarantined_rows_reach_the_quarantine_table_inside_the_warehouse(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]],
    warehouse: sa.Engine,
    staging_root: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "quarantine")
    bad_parquet = quarantine(validate(parquet["events"]), to_folder).datasets["events_quarantine"]
    bad_table = quarantine(validate(tables["events"]), to_table).datasets["events_quarantine"]
    expected = quarantine_table_rows(bad_parquet, WHO, output_uri=to_folder("events_quarantine__table_rows"), at=AT)
    load_dataset(expected, engine=warehouse, target_table="public.from_parquet", load_strategy="insert")
    keep_rows_in_the_warehouse(monkeypatch, most=1)

    staged = quarantine_table_rows(bad_table, WHO, output_uri=to_folder("events_quarantine__table_rows"), at=AT)
    load_dataset(staged, engine=warehouse, target_table="public.events_quarantine", load_strategy="insert")

    assert ws.is_table_uri(staged.uri) and staged.uri.startswith(to_table("x")[:-1])
    assert staged.columns == expected.columns and staged.row_count == expected.row_count == 7
    with warehouse.connect() as conn:
        got, want = (
            [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY event_id::int").all()]
            for t in ("public.events_quarantine", "public.from_parquet")
        )
    assert got == want
    assert got[0][-7:] == ("user_id is_null", "d", "r", AT.replace(tzinfo=None), f"{AT.isoformat()}/{AT.isoformat()}",
                           "quarantine", AT.replace(tzinfo=None))  # fmt: skip


def test_outputs_staged_unlike_the_input_are_refused(
    both: tuple[dict[str, DatasetRef], dict[str, DatasetRef]], staging_root: str
) -> None:
    (parquet, tables), (to_folder, to_table) = both, uri_makers(staging_root, "quarantine")

    with pytest.raises(ValueError, match="must both be warehouse staging tables or both staged Parquet"):
        quarantine(validate(tables["events"]), to_folder)
    with pytest.raises(ValueError, match="must both be warehouse staging tables or both staged Parquet"):
        quarantine(validate(parquet["events"]), to_table)


def test_float_values_read_as_text_the_same_from_either_staging(warehouse: sa.Engine, staging_root: str) -> None:
    from airflow_agent_provider.contracts import parse_sources
    from airflow_agent_provider.engines.extract import extract_sources

    with warehouse.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE floats AS SELECT v::float8 AS v, v::float4 AS r FROM unnest(ARRAY['2.0', '1e15', '1e16', "
            "'-0.0', '1e-5', 'NaN', 'Infinity', '-Infinity', '0.1', '-3.5', '123456.789', NULL]) AS t(v)"
        )
    sources = parse_sources([{"name": "floats", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM floats"}])
    to_folder = uri_makers(staging_root, "quarantine")[0]
    parquet = extract_sources(sources, dataset_uri=to_folder, sql_engine=lambda conn_id: warehouse)
    tables = extract_sources(
        sources, dataset_uri=to_folder, sql_engine=lambda conn_id: warehouse,
        warehouse=ws.WarehouseStaging("wh", "agent_staging", *RUN, "extract"),
    )  # fmt: skip

    want = quarantine_table_rows(parquet.datasets["floats"], WHO, output_uri=to_folder("floats_rows"), at=AT)
    got = quarantine_table_rows(tables.datasets["floats"], WHO, output_uri=to_folder("floats_rows"), at=AT)

    assert sorted(rows_of(got, warehouse, "v, r"), key=str) == sorted(rows_of(want, warehouse, "v, r"), key=str)
    assert ("2.0", "2.0") in rows_of(got, warehouse, "v, r")
