"""``python -m benchmarks.bulk_writes --size 1m``: the warehouses' bulk-write paths, side by side.

The fact target (11 columns) is computed once from the workload's CSV files into a Parquet file;
then each path writes it into a new table in one transaction, in a fresh interpreter (DuckDB's
read of that file included, as in a load). Printed per path: wall seconds, this process's CPU
seconds and, for PostgreSQL, the CPU seconds of the server process that served the connection.

- ``sqlite_executemany``: Python rows, multi-row ``INSERT`` statements through ``executemany``
  (the load's path before ADBC);
- ``sqlite_adbc``: ``adbc_ingest`` of the Arrow batches (``adbc-driver-sqlite``; the load's path);
- ``sqlite_duckdb``: DuckDB's sqlite extension (``INSERT INTO sqlite_db.t SELECT ...``), where the
  installed DuckDB can load it;
- ``postgres_csv_copy``: CSV ``COPY`` through psycopg2 (the load's path), batches written as CSV by pyarrow;
- ``postgres_adbc``: ``adbc_ingest`` (``adbc-driver-postgresql``: binary ``COPY``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.workload import REPO, bench_dir

PATHS = ("sqlite_executemany", "sqlite_adbc", "sqlite_duckdb", "postgres_csv_copy", "postgres_adbc")
BATCH_ROWS = 50_000
ROWS_PER_INSERT = 500
SQLITE_COLUMNS = (
    "event_id INTEGER PRIMARY KEY, user_id BIGINT, event_type TEXT, event_ts TEXT, event_date TEXT, revenue REAL, "
    "session_id TEXT, campaign_id TEXT, country TEXT, plan TEXT, channel TEXT"
)
PG_COLUMNS = (
    "event_id BIGINT, user_id BIGINT, event_type TEXT, event_ts TIMESTAMP, event_date DATE, revenue DOUBLE PRECISION, "
    "session_id TEXT, campaign_id TEXT, country TEXT, plan TEXT, channel TEXT"
)
SQLITE_SELECT = (
    "SELECT event_id, user_id, event_type, strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS event_ts, "
    "CAST(event_date AS VARCHAR) AS event_date, revenue, session_id, campaign_id, country, plan, channel "
    "FROM read_parquet('{path}')"
)


def fact_parquet(size: str) -> Path:
    """The fact target of ``size`` as one Parquet file (made once, cached beside the workload)."""
    import duckdb

    work = workload.ensure(size)
    path = work.folder / "fact.parquet"
    if not path.exists():
        con = duckdb.connect()
        for name in ("events", "users", "campaigns"):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{work.path(name)}')")
        con.execute(f"COPY ({workload.FACT.sql()}) TO '{path}.tmp' (FORMAT parquet)")
        con.close()
        os.replace(f"{path}.tmp", path)
    return path


def _reader(sql: str) -> Any:
    import duckdb

    return duckdb.connect().sql(sql).to_arrow_reader(BATCH_ROWS)


def sqlite_executemany(parquet: Path, database: Path) -> None:
    import sqlite3

    con = sqlite3.connect(database, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute(f"CREATE TABLE fact ({SQLITE_COLUMNS})")
    row = "(" + ", ".join("?" * 11) + ")"
    many = "INSERT INTO fact VALUES " + ", ".join([row] * ROWS_PER_INSERT)
    for batch in _reader(SQLITE_SELECT.format(path=parquet)):
        columns = [column.to_pylist() for column in batch.columns]
        full = batch.num_rows // ROWS_PER_INSERT * ROWS_PER_INSERT
        flat: list[Any] = [None] * (full * 11)
        for j, values in enumerate(columns):
            flat[j::11] = values[:full]
        step = ROWS_PER_INSERT * 11
        con.executemany(many, [flat[i : i + step] for i in range(0, len(flat), step)])
        con.executemany("INSERT INTO fact VALUES " + row, zip(*(v[full:] for v in columns), strict=True))
    con.execute("COMMIT")
    con.close()


def sqlite_adbc(parquet: Path, database: Path) -> None:
    import adbc_driver_sqlite.dbapi

    con = adbc_driver_sqlite.dbapi.connect(str(database), autocommit=True)
    cur = con.cursor()
    cur.execute("BEGIN IMMEDIATE")
    cur.execute(f"CREATE TABLE fact ({SQLITE_COLUMNS})")
    cur.adbc_ingest("fact", _reader(SQLITE_SELECT.format(path=parquet)), mode="append")
    cur.execute("COMMIT")
    cur.close()
    con.close()


def sqlite_duckdb(parquet: Path, database: Path) -> None:
    import duckdb

    # never downloaded: only an extension this DuckDB already has (PyPI's duckdb-extension-sqlite is built for 1.5.5)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("LOAD sqlite")  # raises where this DuckDB has no loadable sqlite extension
    con.execute(f"ATTACH '{database}' AS wh (TYPE sqlite)")
    con.execute("BEGIN")
    con.execute(f"CREATE TABLE wh.fact ({SQLITE_COLUMNS})")
    con.execute(f"INSERT INTO wh.fact {SQLITE_SELECT.format(path=parquet)}")
    con.execute("COMMIT")
    con.close()


def postgres_csv_copy(parquet: Path, dsn: str) -> float:
    import psycopg2
    import pyarrow.csv as pacsv

    con = psycopg2.connect(dsn)
    cur = con.cursor()
    started = _server_cpu(cur)
    cur.execute(f"CREATE TABLE fact ({PG_COLUMNS})")
    for batch in _reader(f"SELECT * FROM read_parquet('{parquet}')"):
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
        buffer.seek(0)
        cur.copy_expert("COPY fact FROM STDIN WITH (FORMAT csv)", buffer, size=1 << 20)
    con.commit()
    server = _server_cpu(cur) - started
    con.close()
    return server


def postgres_adbc(parquet: Path, dsn: str) -> float:
    import adbc_driver_postgresql.dbapi

    con = adbc_driver_postgresql.dbapi.connect(dsn)
    cur = con.cursor()
    started = _server_cpu(cur)
    cur.execute(f"CREATE TABLE fact ({PG_COLUMNS})")
    cur.adbc_ingest("fact", _reader(f"SELECT * FROM read_parquet('{parquet}')"), mode="append")
    con.commit()
    server = _server_cpu(cur) - started
    cur.close()
    con.close()
    return server


def _server_cpu(cur: Any) -> float:
    """CPU seconds of the PostgreSQL backend serving ``cur`` (the server runs on this machine)."""
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchall()[0][0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PRELOAD = (
    "duckdb",
    "pyarrow",
    "pyarrow.csv",
    "sqlite3",
    "psycopg2",
    "adbc_driver_sqlite.dbapi",
    "adbc_driver_postgresql.dbapi",
)


def measure(path: str, size: str) -> dict[str, Any]:
    """One path in this process: the libraries imported first, the write timed, the rows counted after."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    parquet = fact_parquet(size)
    writers: dict[str, Callable[..., Any]] = {
        "sqlite_executemany": sqlite_executemany, "sqlite_adbc": sqlite_adbc, "sqlite_duckdb": sqlite_duckdb,
        "postgres_csv_copy": postgres_csv_copy, "postgres_adbc": postgres_adbc,
    }  # fmt: skip
    if path.startswith("sqlite"):
        target: Any = bench_dir() / "run" / f"bulk-{path}.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
    else:
        target = os.environ["BULK_WRITES_DSN"]
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        server = writers[path](parquet, target)
    except Exception as err:
        return {"path": path, "size": size, "error": f"{type(err).__name__}: {str(err)[:300]}"}
    result = {"path": path, "size": size, "wall_s": round(time.perf_counter() - wall, 2),
              "cpu_s": round(time.process_time() - cpu, 2)}  # fmt: skip
    if server is not None:
        result["server_cpu_s"] = round(server, 2)
    result["rows"] = _rows(target)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def _rows(target: Any) -> int:
    if isinstance(target, Path):
        import sqlite3

        con = sqlite3.connect(target)
        rows = int(con.execute("SELECT count(*) FROM fact").fetchone()[0])
        con.close()
        target.unlink()
        return rows
    import psycopg2

    con = psycopg2.connect(target)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("SELECT count(*) FROM fact")
    rows = int(cur.fetchone()[0])
    cur.execute("DROP TABLE fact")
    con.close()
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk_writes", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1m")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    from benchmarks.warehouse import postgres_database

    fact_parquet(args.size)
    with postgres_database("aap_bulk") as url:
        dsn = url.replace("postgresql+psycopg2://", "postgresql://")
        for _ in range(args.repeat):
            for path in args.paths.split(","):
                command = [sys.executable, "-m", "benchmarks.bulk_writes", "child", path, args.size]
                env = os.environ | {"BULK_WRITES_DSN": dsn}
                proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
                print(proc.stdout.strip() or proc.stderr.strip()[-500:], flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
