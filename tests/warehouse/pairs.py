"""The same sources staged both ways, Parquet and warehouse tables, and the guard that keeps rows in the warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, parse_sources
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.extract import extract_sources

SEED = """
CREATE TABLE q_events (event_id bigint, user_id bigint, event_type text, revenue double precision, code text,
  amount text, day text);
INSERT INTO q_events VALUES
 (1, 10, 'click', 1.0, 'A1', '1.5', '01/01/2024'), (2, NULL, 'view', 2.0, 'A2', '2', '02/01/2024'),
 (3, 12, 'bogus', 3.0, 'A3', 'x', '2024-01-03'), (4, 13, 'click', -1.0, 'A4', '4', '04/01/2024'),
 (5, 14, 'click', 5.0, 'zz', '5', '05/01/2024'), (6, 15, 'click', 500.0, 'A6', '6', '06/01/2024'),
 (7, NULL, 'click', 7.0, 'A7', '7', NULL), (8, 17, 'BAD', 8.0, 'A8', '8', '08/01/2024'),
 (9, 18, 'view', 9.0, 'A9', '9', '09/01/2024'), (10, 99, 'click', NULL, 'A10', NULL, '10/01/2024');
CREATE TABLE q_users (user_id bigint, country text);
INSERT INTO q_users VALUES (10, 'DE'), (12, 'FR'), (13, 'DE'), (14, 'IT'), (15, 'DE'), (17, 'FR'), (18, 'DE');
"""
SOURCES = [
    {"name": "events", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM q_events"},
    {"name": "users", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM q_users"},
]
RUN = ("d", "r")


def stage_both(warehouse: sa.Engine, staging_root: str) -> tuple[dict[str, DatasetRef], dict[str, DatasetRef]]:
    """The seed's events and users staged as Parquet and as warehouse staging tables of run ``RUN``."""
    with warehouse.begin() as conn:
        conn.exec_driver_sql(SEED)
    sources = parse_sources(SOURCES)
    parquet = extract_sources(
        sources, dataset_uri=lambda name: f"{staging_root}/run/extract/{name}", sql_engine=lambda conn_id: warehouse
    )
    tables = extract_sources(
        sources,
        dataset_uri=lambda name: "unused",
        sql_engine=lambda conn_id: warehouse,
        warehouse=ws.WarehouseStaging("wh", "agent_staging", *RUN, "extract"),
    )
    return parquet.datasets, tables.datasets


def uri_makers(staging_root: str, task: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """``dataset -> URI`` of a later task: under the staging root, and as a staging table of the same run."""
    return (
        lambda name: f"{staging_root}/run/{task}/{name}",
        ws.WarehouseStaging("wh", "agent_staging", *RUN, task).uri,
    )


def rows_of(ref: DatasetRef, warehouse: sa.Engine, columns: str = "*") -> list[tuple[Any, ...]]:
    """A staged dataset's rows, ordered (read by the test, not by the code under test)."""
    if ws.is_table_uri(ref.uri):
        table = ws.StagedTable.parse(ref.uri)
        with warehouse.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {columns} FROM {table.sql} ORDER BY 1, 2").all()]
    con = staging.connect()
    try:
        return [
            tuple(r) for r in con.execute(f"SELECT {columns} FROM {staging.scan_sql(ref.uri)} ORDER BY 1, 2").fetchall()
        ]
    finally:
        con.close()


def keep_rows_in_the_warehouse(monkeypatch: pytest.MonkeyPatch, *, most: int = 5, parquet: bool = False) -> list[int]:
    """Fail any warehouse statement whose result has more than ``most`` rows (a sample is at most 5): what
    passes through the worker is counts and samples. Unless ``parquet`` (a DAG whose file sources are read
    into scratch Parquet to be copied in), also fail any read of staged Parquet or DuckDB staging write.
    Returns the sizes of the results seen."""
    from airflow_agent_provider.engines import validate, validate_scan
    from airflow_agent_provider.engines.warehouse_sql import WarehouseCursor

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("staged rows were read or written by the worker")

    if not parquet:
        for name in ("connect", "scan_sql", "write_query", "part_files", "iter_batches", "read_frame", "arrow_dataset"):
            monkeypatch.setattr(staging, name, refuse)
        for name in ("part_files", "shared_cursor"):
            monkeypatch.setattr(validate, name, refuse)
        for name in ("connect", "arrow_dataset"):  # imported by name there
            monkeypatch.setattr(validate_scan, name, refuse)
    seen: list[int] = []
    native = WarehouseCursor.native

    def guarded(self: WarehouseCursor, sql: str) -> WarehouseCursor:
        native(self, sql)  # the result is fetched here, whether or not a caller reads it
        seen.append(len(self._rows))
        if len(self._rows) > most:
            raise AssertionError(f"{len(self._rows)} rows came back from the warehouse to the worker")
        return self

    monkeypatch.setattr(WarehouseCursor, "native", guarded)
    return seen
