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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.objectstore import MotoS3, S3Staging
from tests.process._airflow import (
    HAPPY_PATH,
    REFERENCE_DAG,
    AirflowApi,
    clean_env,
    elapsed,
    fresh_pg_database,
    wait_healthy,
)
from tests.process._procs import ROOT, Proc, free_port, stop_all, wait_until
from tests.process.conftest import fresh_workdir

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REDIS_DB = 11
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


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


def _env(
    work: Path, port: int, metadata_url: str, warehouse_url: str, queue: str, *, s3: S3Staging | None = None
) -> dict[str, str]:
    """The components' environment; staging in ``s3`` (one task per worker at a time), else in ``work/staging``."""
    base_url = f"http://127.0.0.1:{port}"
    sample = work / "sample"
    staging = {"AGENT_PROVIDER_STAGING_ROOT": str(work / "staging"), "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2"}
    if s3 is not None:
        staging = {
            "AIRFLOW__AGENT_PROVIDER__STAGING_ROOT": s3.root,
            "AIRFLOW_CONN_S3_STAGING": json.dumps(s3.server.connection()),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",  # so the parallel extracts spread over both workers
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        }
    return clean_env(
        **staging,
        AIRFLOW_HOME=str(work / "home"),
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
        AIRFLOW__CELERY__BROKER_URL=REDIS_URL,
        AIRFLOW__CELERY__RESULT_BACKEND="db+" + metadata_url.replace("+psycopg2", ""),
        AIRFLOW__OPERATORS__DEFAULT_QUEUE=queue,
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__CORE__AUTH_MANAGER=SIMPLE_AUTH_MANAGER,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(work / "home" / "passwords.json"),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__BASE_URL=base_url,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="60",
        AIRFLOW_VAR_AGENT_SAMPLE_DIR=str(sample),
        AIRFLOW_VAR_AGENT_REPORTS_DIR=str(work / "reports"),
        AIRFLOW_CONN_AGENT_SOURCES_DB=f"sqlite:///{sample}/events.db",
        AIRFLOW_CONN_AGENT_WAREHOUSE=warehouse_url.replace("postgresql+psycopg2://", "postgres://"),
    )


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


def _start_users_api(work: Path, env: dict[str, str]) -> Proc:
    port_file = work / "users_api.port"
    proc = Proc(
        "users-api",
        [
            sys.executable,
            "scripts/demo_http_server.py",
            "--data",
            str(work / "sample/users.json"),
            "--port-file",
            str(port_file),
        ],
        env,
        work / "logs",
    )
    wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 20, "the users API")
    env["AIRFLOW_CONN_AGENT_USERS_API"] = json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": int(port_file.read_text())}
    )
    return proc


def _worker(name: str, queue: str, concurrency: str) -> list[str]:
    return [
        "airflow",
        "celery",
        "worker",
        "--skip-serve-logs",
        "--concurrency",
        concurrency,
        "--queues",
        queue,
        "--celery-hostname",
        f"aap-{name}-{queue}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def _start_components(
    work: Path, env: dict[str, str], port: int, queue: str, *, workers: Sequence[str] = ("celery-worker",)
) -> dict[str, Proc]:
    """api-server, scheduler, dag-processor and ``workers``; several workers get a local staging folder each."""
    logs = work / "logs"
    commands = {
        "api-server": ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
        "dag-processor": ["airflow", "dag-processor"],
    }
    procs = {name: Proc(name, argv, env, logs) for name, argv in commands.items()}
    for name in workers:  # several "hosts": none sees another's local staging folder
        own = {**env, "AGENT_PROVIDER_STAGING_ROOT": str(work / name / "staging")} if len(workers) > 1 else env
        procs[name] = Proc(name, _worker(name, queue, env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]), own, logs)
    return procs


@pytest.fixture(scope="module")
def celery_topology(moto_s3: MotoS3) -> Iterator[CeleryTopology]:
    work = fresh_workdir("celery-topology")
    queue = f"aap_{secrets.token_hex(4)}"
    s3 = S3Staging(moto_s3, moto_s3.new_bucket())
    _flush_broker_db()
    with fresh_pg_database("aap_celery_meta") as metadata_url, fresh_pg_database("aap_celery_dw") as warehouse_url:
        port = free_port()
        env = _env(work, port, metadata_url, warehouse_url, queue, s3=s3)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        started = time.monotonic()
        _prepare(work, env)
        procs = {"users-api": _start_users_api(work, env)}
        try:
            procs.update(_start_components(work, env, port, queue, workers=WORKERS))
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
