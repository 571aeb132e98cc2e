"""The same DAG in both stagings, in-process (``dag.test()``) on the real PostgreSQL.

Warehouse-native mode gives the warehouse state the Parquet mode gives, a rerun of the date changes
nothing, the SQL source's rows never pass through the worker (no reader or load batch ever sees
them), and the run's staging tables are dropped once it succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.engines import extract as extract_engine
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.load_plan import Staged
from tests.process._procs import wait_until
from tests.support.dags import run_dag, task_states, xcom
from tests.warehouse.pairs import keep_rows_in_the_warehouse

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

DAY = "2026-11-10"
ORDERS = """
CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id bigint, amount double precision, day date);
INSERT INTO orders VALUES (1, 1, 10.0, '2026-11-10'), (2, 2, 20.5, '2026-11-10'), (3, 1, 4.5, '2026-11-10'),
  (4, 3, 7.0, '2026-11-10'), (5, 2, 99.0, '2026-11-09'), (6, 3, 1.25, '2026-11-10'),
  (7, NULL, 5.0, '2026-11-11'), (8, 2, -3.0, '2026-11-11'), (9, 1, 12.0, '2026-11-11'), (10, 3, 8.0, '2026-11-11');
"""
BAD_DAY = "2026-11-11"


@pytest.fixture
def pipeline(wh_pg: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    with wh_pg.begin() as conn:
        conn.exec_driver_sql(ORDERS)
    regions = tmp_path / "regions.csv"
    regions.write_text("customer_id,region\n1,north\n2,south\n3,north\n")
    monkeypatch.setenv("AIRFLOW_VAR_WH_REGIONS_CSV", str(regions))
    return wh_pg


def table(engine: sa.Engine, name: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(f"SELECT region, day::text, orders, revenue FROM {name} ORDER BY 1, 2")
        ]


def staging_tables(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r[0] for r in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'agent_staging'")
        ]


def refuse_warehouse_rows_in_the_worker(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fail the SQL source's reader and the load's reader of staged rows when they read a staging table
    (the file source's rows are still read, to be copied in), and any warehouse result of more than 5 rows;
    returns the sizes of the results seen."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("warehouse rows were read into the worker")

    parquet_batches = Staged.batches

    def batches(self: Staged, *args: Any, **kwargs: Any) -> Any:
        if self.in_warehouse:
            refuse()
        return parquet_batches(self, *args, **kwargs)

    monkeypatch.setattr(extract_engine, "extract_sql", refuse)
    monkeypatch.setattr(Staged, "batches", batches)
    return keep_rows_in_the_warehouse(monkeypatch, parquet=True)  # validate, quarantine, transform: counts, samples


def test_warehouse_mode_matches_parquet_mode_without_rows_in_the_worker(
    pipeline: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet = run_dag("wh_pipeline_parquet", DAY)
    assert set(task_states(parquet).values()) == {"success"}, task_states(parquet)
    expected = table(pipeline, "region_revenue_parquet")
    assert expected == [("north", "2026-11-10", 4, 22.75), ("south", "2026-11-10", 1, 20.5)]

    seen = refuse_warehouse_rows_in_the_worker(monkeypatch)
    for _ in range(2):  # a rerun of the date gives the same warehouse state
        run = run_dag("wh_pipeline_warehouse", DAY)
        assert set(task_states(run).values()) == {"success"}, task_states(run)
        assert table(pipeline, "region_revenue_warehouse") == expected
    assert seen  # the validation's statements went through the guard

    extract = xcom(run, "extract")
    uris = {name: ref["uri"] for name, ref in extract["datasets"].items()}
    prefix = f"postgres://wh_pg/agent_staging.{ws.run_prefix('wh_pipeline_warehouse', run.run_id)}"
    assert all(uri.startswith(prefix) for uri in uris.values()), uris
    assert xcom(run, "transform")["datasets"]["region_revenue"]["uri"].startswith(prefix)
    assert xcom(run, "validate")["status"] == "pass"
    load = xcom(run, "load")["metrics"]
    assert load["load_validation"] == {"row_count_match": True, "schema_match": True, "no_duplicates": True}
    assert "region_revenue_warehouse__snap" in load["snapshot_created"]  # the rerun snapshotted the table

    # the run succeeded: retention drops its staging tables (in the background)
    wait_until(lambda: not staging_tables(pipeline), 30, "the run's staging tables to be dropped")


def quarantined(engine: sa.Engine, name: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                f"SELECT order_id, customer_id, amount, day, quarantine_rule, quarantine_task_id FROM {name} ORDER BY 1"
            )
        ]


def test_a_bad_day_is_quarantined_in_the_warehouse_as_with_parquet(
    pipeline: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet = run_dag("wh_pipeline_parquet", BAD_DAY)
    assert set(task_states(parquet).values()) == {"success"}, task_states(parquet)
    expected = table(pipeline, "region_revenue_parquet")
    assert expected == [("north", BAD_DAY, 2, 20.0)]  # orders 9 and 10; 7 (no customer) and 8 (negative) are out
    expected_quarantine = quarantined(pipeline, "public.orders_quarantine_parquet")
    assert [row[:2] for row in expected_quarantine] == [("7", None), ("8", "2")]

    seen = refuse_warehouse_rows_in_the_worker(monkeypatch)
    for _ in range(2):  # a rerun of the date gives the same warehouse state (the quarantine upserts by order_id)
        run = run_dag("wh_pipeline_warehouse", BAD_DAY)
        assert set(task_states(run).values()) == {"success"}, task_states(run)
        assert table(pipeline, "region_revenue_warehouse") == expected
        assert quarantined(pipeline, "public.orders_quarantine_warehouse") == expected_quarantine
    assert seen  # validate and quarantine went through the guard

    metrics = xcom(run, "quarantine")["metrics"]
    assert (metrics["rows_before"], metrics["rows_after"], metrics["rows_quarantined"]) == (4, 2, 2)
    assert metrics["quarantine_rows_loaded"] == 2
    prefix = f"postgres://wh_pg/agent_staging.{ws.run_prefix('wh_pipeline_warehouse', run.run_id)}"
    assert all(ref["uri"].startswith(prefix) for ref in xcom(run, "quarantine")["datasets"].values())
    wait_until(lambda: not staging_tables(pipeline), 30, "the run's staging tables to be dropped")
