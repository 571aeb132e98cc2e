"""The Celery topology's processes: their environment, the users API, api-server, scheduler, dag-processor, worker."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.process._airflow import clean_env
from tests.process._procs import ROOT, Proc, wait_until

REDIS_DB = 11
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
if TYPE_CHECKING:
    from tests.objectstore import S3Staging

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def celery_env(
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


def start_users_api(work: Path, env: dict[str, str]) -> Proc:
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


def start_components(
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
