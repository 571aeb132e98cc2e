"""The docker-compose topology without Docker: CeleryExecutor on loopback PostgreSQL and Redis.

api-server, scheduler, dag-processor and two ``airflow celery worker`` processes as separate
processes (each its own process group, stopped by pid). PostgreSQL holds a fresh metadata DB and a
fresh warehouse DB; Redis DB 11 is the broker (only that DB is flushed), with a queue name unique
to this session. The two workers stand for two hosts: each has a local staging folder of its own
that the other cannot see, and stages in S3 (moto's server on loopback, reached through the
``s3_staging`` connection) as ``[agent_provider] staging_root`` says. The reference DAG is triggered
over REST, its tasks must run on both workers, and the run's staged data is gone once it succeeds.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.objectstore import MotoS3, S3Staging
from tests.process._airflow import (
    HAPPY_PATH,
    REFERENCE_DAG,
    AirflowApi,
    elapsed,
    fresh_pg_database,
    fresh_workdir,
    wait_healthy,
)
from tests.process._celery import REDIS_URL, celery_env, start_components, start_users_api
from tests.process._procs import ROOT, Proc, free_port, stop_all, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


WORKERS = ("celery-worker-a", "celery-worker-b")


@dataclass
class CeleryTopology:
    base_url: str
    warehouse_url: str
    queue: str
    procs: dict[str, Proc]
    startup_s: float
    s3: S3Staging
    work: Path


def _flush_broker_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def _prepare(work: Path, env: dict[str, str]) -> None:
    """Migrate the metadata DB, seed the admin password, generate two days of sample sources."""
    import subprocess

    (work / "home").mkdir(parents=True)
    (work / "home" / "passwords.json").write_text(json.dumps({"admin": "admin"}))
    start = (datetime.now(timezone.utc).date() - timedelta(days=2)).isoformat()
    sample = [sys.executable, "scripts/sample_data.py", "--out", str(work / "sample"), "--start", start, "--days", "3"]
    for argv in (["airflow", "db", "migrate"], sample):
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def celery_topology(moto_s3: MotoS3) -> Iterator[CeleryTopology]:
    work = fresh_workdir("celery-topology")
    queue = f"aap_{secrets.token_hex(4)}"
    s3 = S3Staging(moto_s3, moto_s3.new_bucket())
    _flush_broker_db()
    with fresh_pg_database("aap_celery_meta") as metadata_url, fresh_pg_database("aap_celery_dw") as warehouse_url:
        port = free_port()
        env = celery_env(work, port, metadata_url, warehouse_url, queue, s3=s3)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        started = time.monotonic()
        _prepare(work, env)
        procs = {"users-api": start_users_api(work, env)}
        try:
            procs.update(start_components(work, env, port, queue, workers=WORKERS))
            wait_healthy(f"http://127.0.0.1:{port}", 180, alive=lambda: all(p.alive() for p in procs.values()))
            print(f"Celery topology ready in {elapsed(started)}")
            yield CeleryTopology(
                f"http://127.0.0.1:{port}", warehouse_url, queue, procs, time.monotonic() - started, s3, work
            )
        finally:
            survivors = stop_all(list(procs.values()))
            _flush_broker_db()
        assert survivors == [], f"process groups still alive: {survivors}"


def _warehouse_rows(url: str, day: str) -> list[tuple[object, ...]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT user_id, events FROM user_engagement_daily WHERE CAST(date AS TEXT) = :day")
            return [tuple(row) for row in conn.execute(query, {"day": day})]
    finally:
        engine.dispose()


@pytest.mark.timeout(900)
class TestCeleryTopology:
    def test_reference_dag_runs_on_the_celery_worker_into_the_postgres_warehouse(
        self, celery_topology: CeleryTopology
    ) -> None:
        api = AirflowApi(celery_topology.base_url)
        api.unpause(REFERENCE_DAG)
        run = api.trigger(REFERENCE_DAG, "celery_rest_run")

        final = api.wait_for_run(REFERENCE_DAG, run["dag_run_id"], timeout=600)

        assert final["state"] == "success"
        tis = api.task_instances(REFERENCE_DAG, run["dag_run_id"])
        ran = {task: ti for task, ti in tis.items() if ti["state"] == "success"}
        assert set(ran) == HAPPY_PATH
        assert {ti["state"] for task, ti in tis.items() if task not in ran} == {"skipped"}
        assert {ti["queue"] for ti in ran.values()} == {celery_topology.queue}
        executed = {name: _executed(celery_topology.procs[name]) for name in WORKERS}
        assert all(executed.values()), f"each worker must run some tasks: {executed}"
        assert set.union(*executed.values()) == set(ran), executed
        assert not set.intersection(*executed.values()), executed
        for name in WORKERS:  # staged in S3 only: neither worker's own disk holds staged data
            assert not any((celery_topology.work / name / "staging").rglob("*.parquet")), name
        day = (datetime.fromisoformat(final["run_after"].replace("Z", "+00:00")).date() - timedelta(days=1)).isoformat()
        rows = _warehouse_rows(celery_topology.warehouse_url, day)
        report = api.xcom(REFERENCE_DAG, run["dag_run_id"], "report")
        assert len(rows) == report["rows_loaded"] > 0
        assert len({user for user, _ in rows}) == len(rows)
        extract = api.xcom(REFERENCE_DAG, run["dag_run_id"], "extract_events")
        assert extract["datasets"]["events"]["uri"].startswith(celery_topology.s3.root + "/")
        # retention (the scheduler's listener) removed the run's staged data once the run succeeded
        wait_until(lambda: celery_topology.s3.object_keys() == [], 30, "the run's staged data to be removed")


def _executed(worker: Proc) -> set[str]:
    log = worker.log_path.read_text(errors="replace")
    return set(re.findall(r"Executing workload in Celery: .*?task_id='([^']+)'", log))
