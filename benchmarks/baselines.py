"""The two contenders our pipeline is measured against.

``naive_pandas`` is the way the seed articles show: pandas reads every source whole, checks it in
memory (nulls, unique keys, allowed values, ranges, dtypes), merges and groups in memory and
writes with ``DataFrame.to_sql(if_exists="append", index=False)`` (``method=None``: SQLAlchemy
``executemany``). It passes ``chunksize=100_000``: the default (``None``) builds one Python dict
per row for the whole frame, about 1.2 KB a row, 12 GB at 10M rows, which this shared machine
cannot afford; chunking changes the write speed by a few percent, not the way it works.
``method="multi"`` is measured too when asked (``--with-multi``).

``duckdb_limit`` is the engines' limit: one DuckDB query from the CSV files to the result,
streamed in Arrow batches into the fastest native bulk write measured for the warehouse, in one
transaction into a table with no key — ADBC's ``adbc_ingest`` (the Arrow arrays bound in C) for
SQLite; CSV ``COPY ... FROM STDIN`` for PostgreSQL, the next batch read and encoded while the
server takes the last (less client and server CPU than ADBC's binary COPY here; see the README).
It does no validation and no staging: it is the floor, not a competitor.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.runner import Stopwatch
from benchmarks.warehouse import kind_of
from benchmarks.workload import ANOMALY_EVENTS, QUALITY_RULES, SCHEMAS, Target, Workload

NAIVE_CHUNK_ROWS = 100_000
MULTI_CHUNK_ROWS = 2_000  # method="multi": one INSERT of 2,000 rows (SQLite allows 32,766 bound values)
LIMIT_BATCH_ROWS = 100_000

# ---------------------------------------------------------------- (a) the naive pandas way


def naive_pandas(workload: Workload, url: str, target: Target, *, method: str | None = None) -> dict[str, Any]:
    """Read, check, merge, group and ``to_sql`` in pandas; returns stage timings."""
    import pandas as pd
    import sqlalchemy as sa

    clock = Stopwatch()
    with clock("extract"):
        frames = {
            "events": pd.read_csv(workload.path("events"), parse_dates=["event_ts"]),
            "users": pd.read_csv(workload.path("users")),
            "campaigns": pd.read_csv(workload.path("campaigns")),
        }
    with clock("validate"):
        problems = [p for name, frame in frames.items() for p in check_frame(name, frame)]
        if problems:
            raise ValueError(f"naive validation failed: {problems}")
    with clock("transform"):
        result = naive_result(frames, target)
    with clock("load"):
        engine = sa.create_engine(url)
        chunk = MULTI_CHUNK_ROWS if method == "multi" else NAIVE_CHUNK_ROWS
        result.to_sql(target.table, engine, if_exists="append", index=False, method=method, chunksize=chunk)
        engine.dispose()
    return clock.summary() | {"rows": len(result)}


def check_frame(name: str, frame: Any) -> list[str]:
    """The workload's schema and quality rules, checked the pandas way; returns what failed."""
    problems = [
        f"{name}.{col}: dtype {frame[col].dtype}"
        for col, kind in SCHEMAS[name].items()
        if not _dtype_ok(frame, col, kind)
    ]
    for rule in QUALITY_RULES[name]:
        bad = _violations(frame, rule)
        if bad:
            problems.append(f"{name}.{rule['column']}: {rule['rule']} violated by {bad} rows")
    return problems


def _dtype_ok(frame: Any, column: str, kind: str) -> bool:
    from pandas.api import types

    if column not in frame.columns:
        return False
    series = frame[column]
    if series.isna().all():
        return True
    checks: dict[str, Callable[[Any], bool]] = {
        "integer": types.is_integer_dtype,
        "float": types.is_numeric_dtype,
        "string": types.is_string_dtype,
        "timestamp": types.is_datetime64_any_dtype,
    }
    return bool(checks[kind](series))


def _violations(frame: Any, rule: dict[str, Any]) -> int:
    series = frame[rule["column"]]
    if rule["rule"] == "not_null":
        return int(series.isna().sum())
    if rule["rule"] == "unique":
        return int(series.duplicated(keep=False).sum())
    if rule["rule"] == "in_list":
        return int((series.notna() & ~series.isin(rule["values"])).sum())
    if rule["rule"] == "range":
        return int(((series < rule["min"]) & series.notna()).sum())
    raise ValueError(f"the naive baseline has no check for rule {rule['rule']!r}")


def naive_result(frames: dict[str, Any], target: Target) -> Any:
    """The target table in pandas: merge users and campaigns in, then (daily) group per user per day."""
    events, users, campaigns = frames["events"], frames["users"], frames["campaigns"]
    enriched = events.merge(users[["user_id", "country", "plan"]], on="user_id", how="left")
    enriched = enriched.merge(campaigns[["campaign_id", "channel"]], on="campaign_id", how="left")
    enriched["event_date"] = enriched["event_ts"].dt.date
    enriched["revenue"] = enriched["revenue"].round(2)
    if target.name == "fact":
        return enriched[list(target.columns)]
    return _daily(enriched)


def _daily(enriched: Any) -> Any:
    flags = enriched.assign(
        page_views=enriched["event_type"].eq("page_view"),
        clicks=enriched["event_type"].eq("click"),
        purchases=enriched["event_type"].eq("purchase"),
    )
    daily = (
        flags.groupby(["user_id", "event_date", "country", "plan"], sort=False)
        .agg(
            events=("event_id", "size"),
            page_views=("page_views", "sum"),
            clicks=("clicks", "sum"),
            purchases=("purchases", "sum"),
            revenue=("revenue", "sum"),
            sessions=("session_id", "nunique"),
        )
        .reset_index()
        .rename(columns={"event_date": "date"})
    )
    daily["revenue"] = daily["revenue"].round(2)
    daily["is_anomaly"] = daily["events"] > ANOMALY_EVENTS
    return daily


# ---------------------------------------------------------------- (b) the engines' limit

_SQLITE_TYPES = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
_PG_TYPES = {"int": "BIGINT", "float": "DOUBLE PRECISION", "bool": "BOOLEAN", "ts": "TIMESTAMP", "date": "DATE"}


def _family(arrow_type: Any) -> str:
    import pyarrow as pa

    checks = (
        (pa.types.is_boolean, "bool"),
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_timestamp, "ts"),
        (pa.types.is_date, "date"),
    )
    return next((family for check, family in checks if check(arrow_type)), "str")


def read_target(workload: Workload, target: Target, batch_rows: int, *, wire: bool = False) -> Iterator[Any]:
    """The target as Arrow record batches of one DuckDB query over the CSV files (``wire``: SQLite's types)."""
    import duckdb

    con = duckdb.connect()
    try:
        for name in ("events", "users", "campaigns"):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{workload.path(name)}')")
        yield from con.sql(_wire_sql(target) if wire else target.sql()).to_arrow_reader(batch_rows)
    finally:
        con.close()


def duckdb_limit(workload: Workload, url: str, target: Target) -> dict[str, Any]:
    """One DuckDB pass from the CSV files to the result, streamed into the warehouse's native bulk write."""
    clock = Stopwatch()
    with clock("source_to_warehouse"):
        sqlite = kind_of(url) == "sqlite"
        batches = read_target(workload, target, LIMIT_BATCH_ROWS, wire=sqlite)
        first = next(batches)
        columns = [(f.name, _family(f.type)) for f in first.schema]
        write = _write_sqlite if sqlite else _write_postgres
        rows = write(url, target.table, columns, itertools.chain([first], batches))
    return clock.summary() | {"rows": rows}


def _wire_sql(target: Target) -> str:
    """SQLite stores dates and timestamps as ISO text and booleans as 0/1: convert them in DuckDB."""
    wire = {
        "ts": "strftime({c}, '%Y-%m-%d %H:%M:%S')",
        "date": "CAST({c} AS VARCHAR)",
        "bool": "CAST({c} AS INTEGER)",
    }
    exprs = [
        (wire[kind].format(c=f'"{col}"') + f' AS "{col}"') if kind in wire else f'"{col}"'
        for col, kind in target.columns.items()
    ]
    return f"SELECT {', '.join(exprs)} FROM ({target.sql()})"


def _write_sqlite(url: str, table: str, columns: list[tuple[str, str]], batches: Iterator[Any]) -> int:
    """ADBC's ``adbc_ingest``: one prepared INSERT bound from the Arrow arrays in C, in one transaction."""
    import adbc_driver_sqlite.dbapi
    import pyarrow as pa

    con = adbc_driver_sqlite.dbapi.connect(url.removeprefix("sqlite:///"), autocommit=True)
    cur = con.cursor()
    try:
        ddl = ", ".join(f'"{name}" {_SQLITE_TYPES.get(kind, "TEXT")}' for name, kind in columns)
        cur.execute("BEGIN IMMEDIATE")
        cur.execute(f'CREATE TABLE "{table}" ({ddl})')
        ahead = (batch for batch, _ in _ahead(batches))
        first = next(ahead)
        reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], ahead))
        rows = cur.adbc_ingest(table, reader, mode="append")
        cur.execute("COMMIT")
    finally:
        cur.close()
        con.close()
    return int(rows)


def _write_postgres(url: str, table: str, columns: list[tuple[str, str]], batches: Iterator[Any]) -> int:
    """CSV ``COPY`` per batch, the next batch read and encoded meanwhile."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    rows = 0
    try:
        cur = raw.cursor()
        ddl = ", ".join(f'"{name}" {_PG_TYPES.get(kind, "TEXT")}' for name, kind in columns)
        cur.execute(f'CREATE TABLE "{table}" ({ddl})')
        copy = f'COPY "{table}" FROM STDIN WITH (FORMAT csv)'
        for payload, count in _ahead(batches, _csv):
            cur.copy_expert(copy, payload)
            rows += count
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return rows


def _ahead(batches: Iterator[Any], encode: Callable[[Any], Any] = lambda batch: batch) -> Iterator[tuple[Any, int]]:
    """``(encode(batch), rows)`` per batch; a thread reads and encodes the next one while the caller writes."""
    from concurrent.futures import ThreadPoolExecutor

    def step() -> tuple[Any, int] | None:
        batch = next(batches, None)
        return None if batch is None else (encode(batch), batch.num_rows)

    with ThreadPoolExecutor(1) as worker:
        pending = worker.submit(step)
        while (item := pending.result()) is not None:
            pending = worker.submit(step)
            yield item


def _csv(batch: Any) -> io.BytesIO:
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    return buffer
