"""Warehouse-native load on the real PostgreSQL: INSERT ... SELECT / ON CONFLICT from the staging table."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, parse_sources
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.load_plan import Staged
from airflow_agent_provider.exceptions import LoadError


def staged(engine: sa.Engine, query: str, run_id: str = "r1") -> DatasetRef:
    result = extract_sources(
        parse_sources([{"name": "daily", "type": "sql", "conn_id": "wh", "query": query}]),
        dataset_uri=lambda name: "unused",
        sql_engine=lambda conn_id: engine,
        warehouse=ws.WarehouseStaging("wh", "agent_staging", "d", run_id, "extract"),
    )
    return result.datasets["daily"]


def rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


@pytest.fixture(autouse=True)
def rows_stay_in_the_warehouse(monkeypatch: pytest.MonkeyPatch) -> None:
    parquet_batches = Staged.batches

    def batches(self: Staged, *args: Any, **kwargs: Any) -> Any:
        if self.in_warehouse:
            raise AssertionError("staged rows were read into the worker")
        return parquet_batches(self, *args, **kwargs)

    monkeypatch.setattr(Staged, "batches", batches)


FIRST = "SELECT * FROM (VALUES (1, DATE '2024-01-01', 10.0), (2, DATE '2024-01-01', 20.0)) AS v(user_id, day, total)"
SECOND = "SELECT * FROM (VALUES (2, DATE '2024-01-01', 25.0), (3, DATE '2024-01-01', 30.0)) AS v(user_id, day, total)"


def test_upsert_creates_then_merges_and_a_rerun_changes_nothing(warehouse: sa.Engine) -> None:
    first = load_dataset(
        staged(warehouse, FIRST), engine=warehouse, target_table="public.daily_totals",
        load_strategy="upsert", upsert_key=["user_id", "day"],
    )  # fmt: skip
    assert first.metrics["table_created"] and first.metrics["rows_loaded"] == 2
    ref = staged(warehouse, SECOND, "r2")
    second = load_dataset(
        ref, engine=warehouse, target_table="public.daily_totals", load_strategy="upsert",
        upsert_key=["user_id", "day"], create_snapshot_before_load=True, snapshot_name="daily_totals_before",
    )  # fmt: skip
    assert second.metrics["load_validation"] == {"row_count_match": True, "schema_match": True, "no_duplicates": True}
    assert (second.metrics["rows_inserted"], second.metrics["rows_updated"]) == (1, 1)
    expected = [(1, 10.0), (2, 25.0), (3, 30.0)]
    assert rows(warehouse, "SELECT user_id, total FROM daily_totals ORDER BY 1") == expected
    assert rows(warehouse, "SELECT count(*) FROM daily_totals_before") == [(2,)]
    load_dataset(
        ref, engine=warehouse, target_table="public.daily_totals", load_strategy="upsert", upsert_key=["user_id", "day"]
    )
    assert rows(warehouse, "SELECT user_id, total FROM daily_totals ORDER BY 1") == expected


def test_insert_and_replace_from_the_staging_table(warehouse: sa.Engine) -> None:
    ref = staged(warehouse, FIRST)
    load_dataset(ref, engine=warehouse, target_table="facts", load_strategy="insert")
    load_dataset(ref, engine=warehouse, target_table="facts", load_strategy="insert")
    assert rows(warehouse, "SELECT count(*) FROM facts") == [(4,)]
    result = load_dataset(
        staged(warehouse, SECOND, "r2"), engine=warehouse, target_table="facts", load_strategy="replace"
    )
    assert result.metrics["rows_deleted"] == 4
    assert rows(warehouse, "SELECT user_id FROM facts ORDER BY 1") == [(2,), (3,)]


def test_duplicate_keys_in_the_staging_table_are_refused_before_writing(warehouse: sa.Engine) -> None:
    ref = staged(warehouse, f"{FIRST} UNION ALL {FIRST}")
    with pytest.raises(LoadError, match="duplicate keys"):
        load_dataset(ref, engine=warehouse, target_table="t", load_strategy="upsert", upsert_key=["user_id", "day"])
    assert rows(warehouse, "SELECT to_regclass('public.t') IS NULL") == [(True,)]


@pytest.mark.parametrize("strategy", ["upsert", "insert", "replace"])
def test_duplicate_keys_are_refused_before_writing_into_an_existing_table(warehouse: sa.Engine, strategy: str) -> None:
    load_dataset(staged(warehouse, FIRST), engine=warehouse, target_table="t", upsert_key=["user_id", "day"])
    ref = staged(warehouse, f"{SECOND} UNION ALL {SECOND}", "r2")
    with pytest.raises(LoadError, match="2 duplicate keys for \\(user_id, day\\)"):
        load_dataset(ref, engine=warehouse, target_table="t", load_strategy=strategy, upsert_key=["user_id", "day"])
    assert rows(warehouse, "SELECT user_id, total FROM t ORDER BY 1") == [(1, 10.0), (2, 20.0)]


def test_a_staging_table_of_another_database_is_refused(warehouse: sa.Engine, sqlite_url: str) -> None:
    with pytest.raises(LoadError, match="another database"):
        load_dataset(staged(warehouse, FIRST), engine=sa.create_engine(sqlite_url), target_table="t")


def test_null_keys_in_the_staging_table_are_refused_before_writing(warehouse: sa.Engine) -> None:
    ref = staged(warehouse, f"{FIRST} UNION ALL SELECT NULL, DATE '2024-01-02', 1.0")
    with pytest.raises(LoadError, match=r"1 staged rows .* have a NULL in the key"):
        load_dataset(ref, engine=warehouse, target_table="t", load_strategy="upsert", upsert_key=["user_id", "day"])
    assert rows(warehouse, "SELECT to_regclass('public.t') IS NULL") == [(True,)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param("TRUNCATE {table}", "now empty or gone", id="emptied-as-by-crash-recovery"),
        pytest.param("INSERT INTO {table} VALUES (9, DATE '2024-01-09', 9.0)", "holds 3 rows", id="grown"),
    ],
)
def test_a_staging_table_that_changed_since_it_was_staged_is_refused(
    warehouse: sa.Engine, change: str, message: str
) -> None:
    load_dataset(staged(warehouse, FIRST), engine=warehouse, target_table="t", upsert_key=["user_id"])
    ref = staged(warehouse, SECOND, "r2")
    with warehouse.begin() as conn:  # an unlogged table after a database crash is empty: never load that
        conn.exec_driver_sql(change.format(table=ws.StagedTable.parse(ref.uri).sql))
    with pytest.raises(LoadError, match=message):
        load_dataset(ref, engine=warehouse, target_table="t", load_strategy="replace")
    assert rows(warehouse, "SELECT user_id FROM t ORDER BY 1") == [(1,), (2,)]
