"""Crash mid-load: a worker killed, or its database connection dropped, in the middle of a load.

A separate worker process (``tests/faults/_loader.py``: the real ``load_dataset``, nothing patched)
loads a staged dataset of ``ROWS`` rows into a table that already holds half of them with other
values. The test watches the load from outside and strikes while it is writing:

- PostgreSQL: it polls ``pg_stat_activity`` for the worker's backend (its ``application_name``)
  running the ``COPY`` or the merging ``INSERT ... ON CONFLICT``, then SIGKILLs the worker, or
  terminates that backend with ``pg_terminate_backend`` (the connection dropped);
- SQLite: it waits until the worker holds the write lock (another ``BEGIN IMMEDIATE`` is refused)
  and, for the cases that write the target, until the rollback journal exists, then SIGKILLs it.

Then the target must be exactly as before (a checksum of the table sorted by key), and a second
load of the same staged data in a fresh process, as the task's retry would do, must complete with
the staged rows exactly, no key twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset
import pytest
import sqlalchemy as sa

from tests.faults._support import duplicate_keys, query, stage_table, tables
from tests.process._procs import ROOT, wait_until

ROWS = 200_000
TARGET = "crash_target"
KILL_WAIT_S = 120  # the longest the test waits for the worker to reach the point where it is struck


@dataclass(frozen=True)
class Staged:
    uri: str
    checksum: str


def rows_checksum(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()


def table_checksum(engine: sa.Engine, table: str = TARGET) -> str:
    """The checksum of the table sorted by its key (``id``)."""
    return rows_checksum(query(engine, f'SELECT id, user_id, kind, amount, note FROM "{table}" ORDER BY id'))


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    """``ROWS`` rows keyed by ``id``: enough that the load takes seconds, so "mid-load" is real."""
    rng = np.random.default_rng(20261110)
    data = pa.table(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "user_id": rng.integers(1, 5_000, ROWS),
            "kind": pa.array(np.where(rng.random(ROWS) < 0.6, "click", "purchase")),
            "amount": np.round(rng.random(ROWS) * 250, 2),
            "note": pa.array([f"event {i} of the day" for i in range(ROWS)]),
        }
    )
    ref = stage_table(str(tmp_path_factory.mktemp("crash-staging")), data, name="events", describe=False)
    return Staged(ref.uri, rows_checksum([tuple(r.values()) for r in data.to_pylist()]))


def prepare_target(engine: sa.Engine, table: str = TARGET) -> str:
    """The target holds the first half of the keys with old values; returns its checksum."""
    half = ROWS // 2
    real = "REAL" if engine.dialect.name == "sqlite" else "DOUBLE PRECISION"
    query(engine, f"DROP TABLE IF EXISTS {table}")
    query(engine, f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, user_id BIGINT, kind TEXT, amount {real}, note TEXT)")
    values = "n, n / 7, 'old', -1.0, 'before the crash'"
    if engine.dialect.name == "sqlite":
        series = f"WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < {half - 1})"
        rows = f"{series} SELECT {values} FROM g"
    else:
        rows = f"SELECT {values} FROM generate_series(0, {half - 1}) AS n"
    query(engine, f"INSERT INTO {table} {rows}")
    return table_checksum(engine, table)


# ---------------------------------------------------------------------------------------------- the worker


class Worker:
    """One loader process (its own session, so a kill reaches nothing else)."""

    def __init__(self, uri: str, url: str, strategy: str) -> None:
        self.app = f"aap_crash_{uuid.uuid4().hex[:10]}"
        if url.startswith("postgresql"):
            url = f"{url}?application_name={self.app}"
        args = {"uri": uri, "url": url, "table": TARGET, "strategy": strategy, "key": ["id"], "batch_rows": 20_000}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._loader", json.dumps(args)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.kill(self.popen.pid, signal.SIGKILL)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        out, err = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, out + err

    def alive(self) -> bool:
        return self.popen.poll() is None

    def outcome(self, timeout: float = 300) -> dict[str, Any]:
        """The worker's last line: ``done`` (metrics) or ``error`` (type, message, cause)."""
        code, output = self.finish(timeout)
        last = [line for line in output.splitlines() if line.startswith(("done ", "error "))]
        assert last, f"the worker printed no outcome (exit {code}):\n{output[-3000:]}"
        kind, _, body = last[-1].partition(" ")
        return {"kind": kind, "exit": code, **json.loads(body)}


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:  # only the processes this test started, by pid
        if worker.alive():
            worker.kill()
        worker.popen.communicate(timeout=30)


# ---------------------------------------------------------------------------------------------- watching


def pg_activity(admin: Any, app: str) -> list[tuple[int, str, str]]:
    with admin.cursor() as cur:
        cur.execute("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s", (app,))
        return [(int(pid), str(state), str(text)) for pid, state, text in cur.fetchall()]


def wait_for_statement(admin: Any, worker: Worker, statement: str) -> int:
    """Poll until the worker's backend is running ``statement`` (COPY, or INSERT ... ON CONFLICT); its pid."""

    def running() -> int | None:
        assert worker.alive(), f"the worker ended before its {statement}: {worker.finish()[1][-2000:]}"
        for pid, state, text in pg_activity(admin, worker.app):
            head = text.lstrip().upper()
            if state == "active" and head.startswith(statement) and (statement != "INSERT" or "ON CONFLICT" in head):
                return pid
        return None

    pid: int = wait_until(running, KILL_WAIT_S, f"the worker's {statement}", interval=0.005)
    return pid


def sqlite_write_locked(path: Path) -> bool:
    """True when another connection holds the database's write lock."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise
        return True
    finally:
        probe.close()


def wait_for_sqlite_write(path: Path, worker: Worker, *, journal: bool) -> None:
    """Wait until the worker holds the write lock (and, with ``journal``, has started rewriting pages)."""
    journal_path = Path(f"{path}-journal")

    def writing() -> bool:
        assert worker.alive(), f"the worker ended before it was struck: {worker.finish()[1][-2000:]}"
        if journal and not journal_path.exists():
            return False
        return sqlite_write_locked(path)

    wait_until(writing, KILL_WAIT_S, "the worker to hold the write transaction", interval=0.01)


@pytest.fixture
def pg_admin(pg_url: str) -> Iterator[Any]:
    import psycopg2

    dsn = sa.make_url(pg_url)
    con = psycopg2.connect(host=dsn.host, port=dsn.port, user=dsn.username, dbname=dsn.database)
    con.autocommit = True
    yield con
    con.close()


def gone(admin: Any, app: str) -> Callable[[], bool]:
    return lambda: not pg_activity(admin, app)


def check_retry(staged: Staged, engine: sa.Engine, url: str, strategy: str, workers: list[Worker]) -> None:
    """A second load of the same staged data, in a fresh process, completes with exactly the staged rows."""
    retry = Worker(staged.uri, url, strategy)
    workers.append(retry)
    outcome = retry.outcome()
    assert outcome["kind"] == "done", outcome
    assert outcome["load_validation"] == {"row_count_match": True, "schema_match": True, "no_duplicates": True}
    assert table_checksum(engine) == staged.checksum
    assert duplicate_keys(engine, TARGET, ["id"]) == 0
    assert query(engine, f"SELECT count(*) FROM {TARGET}")[0][0] == ROWS


# ---------------------------------------------------------------------------------------------- tests

POSTGRES_KILLS = [
    pytest.param("upsert", "COPY", id="upsert-killed-in-the-copy"),
    pytest.param("upsert", "INSERT", id="upsert-killed-in-the-merge"),
    pytest.param("replace", "COPY", id="replace-killed-while-copying-into-the-emptied-target"),
]
SQLITE_KILLS = [
    pytest.param("upsert", False, id="upsert-killed-holding-the-write-lock-while-staging"),
    pytest.param("upsert", True, id="upsert-killed-in-the-merge"),
    pytest.param("replace", True, id="replace-killed-while-writing-the-emptied-target"),
]


@pytest.mark.slow
class TestWorkerKilledMidLoad:
    @pytest.mark.parametrize(("strategy", "statement"), POSTGRES_KILLS)
    def test_postgres_table_is_as_before_and_the_retry_completes(
        self, *, staged: Staged, pg_url: str, pg_admin: Any, workers: list[Worker], strategy: str, statement: str
    ) -> None:
        engine = sa.create_engine(pg_url)
        before = prepare_target(engine)
        worker = Worker(staged.uri, pg_url, strategy)
        workers.append(worker)
        wait_for_statement(pg_admin, worker, statement)
        worker.kill()
        assert worker.finish()[0] == -signal.SIGKILL
        wait_until(gone(pg_admin, worker.app), 120, "the server to end the dead worker's transaction")
        assert table_checksum(engine) == before
        assert tables(engine) == {TARGET}  # no snapshot, stage or half-made table left behind
        check_retry(staged, engine, pg_url, strategy, workers)
        engine.dispose()

    @pytest.mark.parametrize(("strategy", "journal"), SQLITE_KILLS)
    def test_sqlite_table_is_as_before_and_the_retry_completes(
        self, *, staged: Staged, tmp_path: Path, workers: list[Worker], strategy: str, journal: bool
    ) -> None:
        path = tmp_path / "warehouse.db"
        url = f"sqlite:///{path}"
        engine = sa.create_engine(url)
        before = prepare_target(engine)
        worker = Worker(staged.uri, url, strategy)
        workers.append(worker)
        wait_for_sqlite_write(path, worker, journal=journal)
        worker.kill()
        assert worker.finish()[0] == -signal.SIGKILL
        assert Path(f"{path}-journal").exists() == journal  # a hot journal is what the next reader rolls back
        assert table_checksum(engine) == before
        assert tables(engine) == {TARGET}
        check_retry(staged, engine, url, strategy, workers)
        engine.dispose()


@pytest.mark.slow
class TestConnectionDroppedMidLoad:
    @pytest.mark.parametrize("statement", ["COPY", "INSERT"], ids=["in-the-copy", "in-the-merge"])
    def test_postgres_backend_terminated_fails_the_load_cleanly_and_the_retry_completes(
        self, *, staged: Staged, pg_url: str, pg_admin: Any, workers: list[Worker], statement: str
    ) -> None:
        engine = sa.create_engine(pg_url)
        before = prepare_target(engine)
        worker = Worker(staged.uri, pg_url, "upsert")
        workers.append(worker)
        pid = wait_for_statement(pg_admin, worker, statement)
        with pg_admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        outcome = worker.outcome()
        assert (outcome["kind"], outcome["type"], outcome["exit"]) == ("error", "LoadError", 3)
        assert f"load into {TARGET} failed and was rolled back" in outcome["message"]
        dropped = (  # what libpq says depends on where the client was when its backend went
            "terminating connection due to administrator command|server closed the connection unexpectedly"
            "|invalid socket|no connection to the server|could not send data to server"
        )
        assert re.search(dropped, outcome["message"]), outcome["message"]
        assert outcome["cause"] is not None  # chained to the driver's error
        wait_until(gone(pg_admin, worker.app), 60, "the terminated backend to go")
        assert table_checksum(engine) == before
        check_retry(staged, engine, pg_url, "upsert", workers)
        engine.dispose()


class TestLoadThroughAnAirflowPostgresConnection:
    """The crash tests above load through a psycopg2 engine; a DAG loads through its Airflow connection,
    whose PostgresHook engine is psycopg 3 (this failed on copy_expert until 3108e78)."""

    def test_a_default_postgres_connection_loads(
        self, pg_url: str, staging_root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from airflow_agent_provider.contracts import StageResult
        from airflow_agent_provider.operators import LoadOperator
        from tests.support.operators import direct_context

        url = sa.make_url(pg_url)
        monkeypatch.setenv("AIRFLOW_CONN_FAULTS_PG", f"postgres://postgres@{url.host}:{url.port}/{url.database}")
        ref = stage_table(staging_root, {"id": [1, 2], "amount": [3.0, 4.0]})
        upstream = StageResult(stage="transform", status="success", datasets={"orders": ref}).to_xcom()
        load = LoadOperator(
            task_id="load", upstream=upstream, conn_id="faults_pg", target_table="orders",
            load_strategy="upsert", upsert_key=["id"],
        )  # fmt: skip
        result = load.execute(direct_context("load"))
        assert result["metrics"]["rows_loaded"] == 2
        engine = sa.create_engine(pg_url)
        assert query(engine, "SELECT id, amount FROM orders ORDER BY id") == [(1, 3.0), (2, 4.0)]
        engine.dispose()


# ---------------------------------------------------------------------------------------------- a real task


def task_process(client_port: int, worker_pid: int) -> int:
    """The pid of the process on this machine holding the loader's connection (checked to be a task of our worker)."""
    import psutil

    owners = [c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == client_port and c.pid]
    assert len(set(owners)) == 1, f"no single owner of local port {client_port}: {owners}"
    process = psutil.Process(owners[0])
    assert worker_pid in [p.pid for p in process.parents()], "the connection is not held by a task of our worker"
    return process.pid


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestAirflowTaskKilledMidLoad:
    def test_the_retry_of_a_task_killed_in_its_load_completes_exactly_once(self, faults_airflow: Any) -> None:
        from tests.faults._topology import CRASH_APP

        table, dag_id = "crash_task_target", "faults_crash_load"
        engine, api = faults_airflow.warehouse(), faults_airflow.api
        before = prepare_target(engine, table)
        admin = engine.raw_connection().driver_connection
        admin.autocommit = True
        api.unpause(dag_id)
        run = api.trigger(dag_id, f"crash_{uuid.uuid4().hex[:8]}")

        def loading() -> tuple[int, int] | None:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT pid, client_port, query FROM pg_stat_activity WHERE application_name = %s "
                    "AND state = 'active'",
                    (CRASH_APP,),
                )
                found = [
                    (pid, port)
                    for pid, port, text in cur.fetchall()
                    if text.lstrip().upper().startswith(("COPY", "INSERT"))
                ]
            return found[0] if found else None

        backend, port = wait_until(loading, 600, "the load task to be writing", interval=0.01)
        os.kill(task_process(port, faults_airflow.procs["celery-worker"].pid), signal.SIGKILL)

        def killed_backend_gone() -> bool:
            return backend not in [pid for pid, *_ in pg_activity(admin, CRASH_APP)]

        wait_until(killed_backend_gone, 120, "the killed try's backend to go")
        assert table_checksum(engine, table) == before  # before the retry (15 s later) starts

        final = api.wait_for_run(dag_id, run["dag_run_id"], timeout=600)
        load = api.task_instances(dag_id, run["dag_run_id"])["load"]
        assert (final["state"], load["state"], load["try_number"]) == ("success", "success", 2)
        staged_uri = api.xcom(dag_id, run["dag_run_id"], "stage")["datasets"]["events"]["uri"]
        staged = pa.dataset.dataset(staged_uri, format="parquet").to_table()
        assert table_checksum(engine, table) == rows_checksum([tuple(r.values()) for r in staged.to_pylist()])
        assert duplicate_keys(engine, table, ["id"]) == 0
        admin.close()
        engine.dispose()
