"""Warehouses for the benchmark: a SQLite file per measurement, a fresh PostgreSQL database per run.

``table_checksum`` proves that every contender wrote the same table: it reads the target table
back ordered by its key, renders each row canonically (integers as integers, floats to two
decimals, timestamps as ``YYYY-MM-DD HH:MM:SS``, dates as ``YYYY-MM-DD``, booleans as
true/false, NULL as ``∅``) and hashes the lines with SHA-256. The rendering runs in DuckDB over
Arrow batches, so a 10M-row table is read in bounded memory; whatever type a contender chose
for a column (TEXT timestamps in SQLite, 0/1 booleans ...) the same values give the same digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.workload import Target

PG_ADMIN_DSN = os.environ.get("AGENT_PROVIDER_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
NULL = "∅"
CHECKSUM_BATCH_ROWS = 200_000

_CANONICAL = {
    "int": "CAST(CAST({c} AS HUGEINT) AS VARCHAR)",
    "float": "printf('%.2f', CAST({c} AS DOUBLE))",
    "str": "CAST({c} AS VARCHAR)",
    "ts": "strftime(CAST({c} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S')",
    "date": "strftime(CAST({c} AS TIMESTAMP), '%Y-%m-%d')",
    "bool": "CAST(CAST({c} AS BOOLEAN) AS VARCHAR)",
}


@contextlib.contextmanager
def postgres_database(prefix: str = "aap_bench") -> Iterator[str]:
    """A fresh database on the local server (trust auth), dropped on exit; yields its SQLAlchemy URL."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield PG_URL.format(name=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def sqlite_url(folder: Path, label: str) -> str:
    """A new, empty SQLite warehouse file for one measurement."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def kind_of(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


def drop_table(url: str, table: str) -> None:
    """Start a measurement from an empty warehouse: the target table does not exist."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        engine.dispose()


DLT_TABLES = ("_dlt_loads", "_dlt_version", "_dlt_pipeline_state")


def drop_dlt(url: str, dataset: str) -> None:
    """Forget an earlier dlt run in this warehouse: its bookkeeping tables and its staging dataset.

    dlt restores a pipeline's state from ``_dlt_pipeline_state`` when its local folder is new; a state
    whose table was dropped would skip creating it again.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in DLT_TABLES:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
            if kind_of(url) == "postgres":
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    finally:
        engine.dispose()


def table_checksum(url: str, target: Target, batch_rows: int = CHECKSUM_BATCH_ROWS) -> dict[str, Any]:
    """Row count and SHA-256 of the canonical rows of ``target.table`` sorted by its key."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        present = {c["name"] for c in sa.inspect(engine).get_columns(target.table)}
        missing = sorted(set(target.columns) - present)
        if missing:
            raise ValueError(f"{target.table} lacks columns {missing} (has {sorted(present)})")
        raw = engine.raw_connection()
        try:
            rows, digest = _digest(raw, url, target, batch_rows)
        finally:
            raw.close()
    finally:
        engine.dispose()
    extra = sorted(present - set(target.columns))
    return {"rows": rows, "sha256": digest, "extra_columns": extra}


def _digest(raw: Any, url: str, target: Target, batch_rows: int) -> tuple[int, str]:
    import duckdb

    columns = sorted(target.columns)
    select = ", ".join(f'"{c}"' for c in columns)
    order = ", ".join(f'"{c}"' for c in target.key)
    cursor = raw.cursor(name="bench_checksum") if kind_of(url) == "postgres" else raw.cursor()
    if kind_of(url) == "postgres":
        cursor.itersize = batch_rows
    cursor.execute(f'SELECT {select} FROM "{target.table}" ORDER BY {order}')
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sha, rows = hashlib.sha256(), 0
    try:
        sql = _canonical_sql(columns, target)
        while batch := cursor.fetchmany(batch_rows):
            con.register("batch", _arrow(batch, columns))
            (text,) = con.execute(sql).fetchall()[0]
            sha.update((text + "\n").encode())
            con.unregister("batch")
            rows += len(batch)
    finally:
        con.close()
        cursor.close()
    return rows, sha.hexdigest()


def _canonical_sql(columns: list[str], target: Target) -> str:
    parts = [f"coalesce({_CANONICAL[target.columns[c]].format(c=chr(34) + c + chr(34))}, '{NULL}')" for c in columns]
    return f"SELECT string_agg(concat_ws('|', {', '.join(parts)}), chr(10) ORDER BY __i) FROM batch"


def _arrow(batch: list[Any], columns: list[str]) -> Any:
    """Fetched rows as an Arrow table with a row index; a column of mixed Python types becomes text."""
    import pyarrow as pa

    arrays = {"__i": pa.array(range(len(batch)), pa.int64())}
    for name, values in zip(columns, zip(*batch, strict=True), strict=True):
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)
