"""Warehouse-native staging vs staged Parquet, for data that starts and ends in PostgreSQL.

``python -m benchmarks.warehouse_native --rows 1000000`` creates a fresh database ``aap_bench_<hex>``
on 127.0.0.1:5432 (dropped at the end), generates ``orders`` there (``generate_series``: the rows
start in the warehouse), then runs the pipeline the operators run — ``extract_sources`` (one SQL
source on the same database) → ``validate_dataset`` (unique, not_null, range, in_list) →
``run_transformations`` → ``load_dataset(upsert)`` — for two targets:

- ``daily``: revenue and orders per user per day (upserted by ``(user_id, day)``);
- ``fact``: every paid order (upserted by ``order_id``);

in three ways, each in a fresh interpreter (wall seconds per stage, the worker's peak RSS):

- ``parquet``: staged Parquet in a local folder (the rows travel warehouse → worker → warehouse);
- ``warehouse``: ``warehouse=WarehouseStaging(...)`` (``ExtractOperator(staging_conn_id=...)``): the
  stages run in the warehouse; no row passes through the worker;
- ``naive``: the naive pandas way (as ``benchmarks.baselines.naive_pandas`` for the file pipeline):
  ``pd.read_sql`` of the whole table, the same four rules checked in pandas, the filter and
  ``groupby`` in pandas, ``DataFrame.to_sql(if_exists="append", chunksize=100_000)`` into a new
  table with no key (pandas has no upsert: this is the first load of a date, nothing to merge).

"bytes staged on the worker" is the size of the Parquet datasets the run wrote (0 in warehouse
mode, whose datasets are tables; 0 for pandas, which holds the rows in memory). "bytes on the
wire" is what the worker's PostgreSQL connections sent and received (each TCP socket's
``tcpi_bytes_acked + tcpi_bytes_received``, read before the pool closes or takes back the
connection): the rows that pass through the worker, both ways, plus the statements and results.
Every way must leave the same target (row count and column sums).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
SEED = """
CREATE TABLE orders AS
SELECT g AS order_id, (g * 7919) % {users} AS user_id,
       DATE '2026-11-01' + (g % 7)::int AS day,
       round(((g * 31) % 10000) / 100.0, 2)::double precision AS amount,
       (ARRAY['paid', 'paid', 'paid', 'refunded', 'pending'])[1 + g % 5] AS status
FROM generate_series(1::bigint, {rows}::bigint) AS g;
ALTER TABLE orders ADD PRIMARY KEY (order_id);
ANALYZE orders;
"""
STEPS = {
    "daily": (
        "SELECT user_id, day, count(*) AS orders, sum(amount) AS revenue FROM orders "
        "WHERE status = 'paid' GROUP BY ALL",
        ["user_id", "day"],
    ),
    "fact": ("SELECT order_id, user_id, day, amount FROM orders WHERE status = 'paid'", ["order_id"]),
}
CHECKSUMS = {  # the same target: row count and column sums (each double rounded to 6 decimals first, then
    # summed exactly: summing the doubles differs in the last digits with the order of summation)
    "daily": "SELECT count(*), concat_ws('/', sum(user_id), sum(day - DATE '2026-11-01'), sum(orders), "
    "sum(round(revenue::numeric, 6))) FROM {table}",
    "fact": "SELECT count(*), concat_ws('/', sum(order_id), sum(user_id), sum(day - DATE '2026-11-01'), "
    "sum(round(amount::numeric, 6))) FROM {table}",
}
RULES = [
    {"rule": "unique", "column": "order_id"},
    {"rule": "not_null", "column": "user_id"},
    {"rule": "range", "column": "amount", "min": 0, "max": 100},
    {"rule": "in_list", "column": "status", "values": ["paid", "refunded", "pending"]},
]


_WIRE: dict[tuple[int, int], int] = {}
_TCP_BYTES_AT = 120  # struct tcp_info (Linux): tcpi_bytes_acked, then tcpi_bytes_received (u64 each)


def tcp_bytes(dbapi: Any) -> int:
    """Bytes a PostgreSQL connection's TCP socket has sent (acknowledged) and received so far."""
    import os
    import socket
    import struct

    with socket.socket(fileno=os.dup(dbapi.fileno())) as sock:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    sent, received = struct.unpack_from("<QQ", info, _TCP_BYTES_AT)
    return int(sent + received)


def count_wire() -> None:
    """Note each pooled connection's TCP bytes when the pool takes it back and before it closes it."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def note(dbapi: Any, _record: Any) -> None:
        if dbapi is not None and not dbapi.closed:
            key = (id(dbapi), dbapi.info.backend_pid)
            _WIRE[key] = max(_WIRE.get(key, 0), tcp_bytes(dbapi))

    event.listen(Pool, "checkin", note)
    event.listen(Pool, "close", note)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One way and one target in this (fresh) interpreter; with the bytes its connections carried."""
    from airflow_agent_provider.engines import warehouse_staging as ws

    count_wire()
    result = naive(spec) if spec["way"] == "naive" else pipeline(spec)
    ws.set_connector(None)  # closes the staging engines' connections (their bytes noted)
    return result | {"worker_wire_bytes": sum(_WIRE.values())}


def naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive pandas way: everything read into the worker, checked, shaped and written back."""
    import pandas as pd
    import sqlalchemy as sa

    from benchmarks.baselines import NAIVE_CHUNK_ROWS
    from benchmarks.runner import Stopwatch

    engine, target, clock = sa.create_engine(spec["url"], poolclass=sa.pool.NullPool), spec["target"], Stopwatch()
    table = f"{target}_naive"
    with clock("extract"):
        orders = pd.read_sql("SELECT * FROM orders", engine)
    with clock("validate"):
        problems = {rule["rule"]: count for rule in RULES if (count := naive_violations(orders, rule))}
    with clock("transform"):
        paid = orders[orders["status"] == "paid"]
        if target == "daily":
            result = paid.groupby(["user_id", "day"], sort=False).agg(
                orders=("order_id", "size"), revenue=("amount", "sum")
            )
            result = result.reset_index()
        else:
            result = paid[["order_id", "user_id", "day", "amount"]]
    with clock("load"):
        result.to_sql(table, engine, schema="public", if_exists="append", index=False, chunksize=NAIVE_CHUNK_ROWS)
    with engine.connect() as conn:
        rows, checksum = conn.exec_driver_sql(CHECKSUMS[target].format(table=f"public.{table}")).one()
    return clock.summary() | {
        "way": "naive",
        "target": target,
        "validation": "fail" if problems else "pass",
        "rows_loaded": len(result),
        "target_rows": int(rows),
        "target_checksum": str(checksum),
        "bytes_staged_on_worker": 0,
    }


def naive_violations(frame: Any, rule: dict[str, Any]) -> int:
    """Rows breaking one of :data:`RULES`, the pandas way."""
    series = frame[rule["column"]]
    if rule["rule"] == "unique":
        return int(series.duplicated(keep=False).sum())
    if rule["rule"] == "not_null":
        return int(series.isna().sum())
    if rule["rule"] == "range":
        return int((series.notna() & ((series < rule["min"]) | (series > rule["max"]))).sum())
    return int((series.notna() & ~series.isin(rule["values"])).sum())


def pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's engines, staging as Parquet or in the warehouse."""
    import sqlalchemy as sa

    from airflow_agent_provider.contracts import parse_quality_rules, parse_sources, parse_transformations
    from airflow_agent_provider.engines import warehouse_staging as ws
    from airflow_agent_provider.engines.extract import extract_sources
    from airflow_agent_provider.engines.load import load_dataset
    from airflow_agent_provider.engines.transform import run_transformations
    from airflow_agent_provider.engines.validate import validate_dataset
    from benchmarks.runner import Stopwatch

    url, way, target, root = spec["url"], spec["way"], spec["target"], spec["root"]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)  # every connection closed (its bytes noted) after use
    ws.set_connector(lambda conn_id: sa.create_engine(url))
    run_id = f"bench_{uuid.uuid4().hex[:8]}"
    staging = ws.WarehouseStaging("bench", "agent_staging", "bench", run_id, "extract") if way == "warehouse" else None
    out = ws.WarehouseStaging("bench", "agent_staging", "bench", run_id, "transform")
    clock = Stopwatch()
    sql, key = STEPS[target]
    with clock("extract"):
        extracted = extract_sources(
            parse_sources([{"name": "orders", "type": "sql", "conn_id": "bench", "query": "SELECT * FROM orders"}]),
            dataset_uri=lambda name: f"{root}/{run_id}/extract/{name}",
            sql_engine=lambda conn_id: engine,
            warehouse=staging,
        )
    ref = extracted.datasets["orders"]
    with clock("validate"):
        checked = validate_dataset(ref, dataset="orders", quality_rules=parse_quality_rules(RULES))
    with clock("transform"):
        transformed = run_transformations(
            {"orders": ref},
            parse_transformations([{"name": target, "type": "sql", "sql": sql}]),
            output_dataset=target,
            output_uri=out.uri(target) if staging else f"{root}/{run_id}/transform/{target}",
        )
    result = transformed.datasets[target]
    with clock("load"):
        loaded = load_dataset(
            result, engine=engine, target_table=f"public.{target}_{way}", load_strategy="upsert", upsert_key=key
        )
    with engine.connect() as conn:
        rows, checksum = conn.exec_driver_sql(CHECKSUMS[target].format(table=f"public.{target}_{way}")).one()
    staged_bytes = sum(r.bytes or 0 for r in (ref, result)) if staging is None else 0
    return clock.summary() | {
        "way": way,
        "target": target,
        "validation": checked.status,
        "rows_loaded": loaded.metrics["rows_loaded"],
        "target_rows": int(rows),
        "target_checksum": str(checksum),
        "bytes_staged_on_worker": staged_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--targets", default="daily,fact")
    parser.add_argument("--ways", default="parquet,warehouse,naive")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    import psycopg2

    name = f"aap_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    results = []
    try:
        with psycopg2.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as con, con.cursor() as cur:
            started = time.perf_counter()
            cur.execute(SEED.format(rows=int(args.rows), users=max(int(args.rows) // 100, 10)))
            print(f"seeded {args.rows} orders in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="aap-bench-wh-") as root:
            for target in args.targets.split(","):
                for way in args.ways.split(","):
                    spec = {"url": url, "way": way, "target": target, "root": root}
                    done = subprocess.run(
                        [sys.executable, "-m", "benchmarks.warehouse_native", "--child", json.dumps(spec)],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if done.returncode:
                        raise SystemExit(f"{way}/{target} failed:\n{done.stderr[-3000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    results.append(result)
                    print(json.dumps(result), file=sys.stderr)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print(markdown(results, args.rows))


def markdown(results: list[dict[str, Any]], rows: int) -> str:
    lines = [
        f"{rows:,} orders in PostgreSQL:",
        "",
        "| target | way | extract s | validate s | transform s | load s | total s | peak RSS MiB | "
        "bytes staged on the worker | bytes on the wire | target rows | same target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_target.setdefault(r["target"], []).append(r)
    for target, found in by_target.items():
        same = len({(r["target_rows"], r["target_checksum"]) for r in found}) == 1
        for r in found:
            s = r["stages"]
            lines.append(
                f"| {target} | {r['way']} | {s['extract']:.2f} | {s['validate']:.2f} | {s['transform']:.2f} | "
                f"{s['load']:.2f} | {r['seconds']:.2f} | {r['peak_rss_kib'] / 1024:.0f} | "
                f"{r['bytes_staged_on_worker']:,} | {r['worker_wire_bytes']:,} | {r['target_rows']:,} | "
                f"{'yes' if same else 'NO'} |"
            )
        base = {r["way"]: r["seconds"] for r in found}
        for other in ("parquet", "naive"):
            if other in base and "warehouse" in base:
                ratio = base[other] / base["warehouse"]
                lines.append(f"| {target} | {other} / warehouse | | | | | {ratio:.2f}x | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
