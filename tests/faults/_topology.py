"""The Celery topology the slow reliability tests share: the one of ``tests/process/test_celery_topology.py``
(api-server, scheduler, dag-processor, one ``airflow celery worker`` on loopback PostgreSQL and Redis),
started from its helpers, with what these tests add:

- a second DAG bundle, ``tests/faults/dags``, beside the reference DAG;
- Redis DB 12 as the broker (the process tests own DB 11) and a queue unique to the session, whose
  keys alone are deleted at the end (two runs on one machine may share the DB);
- sample sources covering ``BACKFILL_DAYS`` days that ended before today, for the backfill;
- connections that carry secrets (a PostgreSQL password, the Claude API key), FakeClaude as its own
  process, and the alert receivers, for the log-file test;

Every process runs in its own process group and is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.agents.support import KEY
from tests.process._airflow import AirflowApi, bundles, elapsed, fresh_pg_database, fresh_workdir, wait_healthy
from tests.process._celery import celery_env, start_components, start_users_api
from tests.process._procs import ROOT, Proc, Receivers, free_port, stop_all, wait_until

FAULT_DAGS = Path(__file__).resolve().parent / "dags"
REDIS_DB = 12
BACKFILL_DAYS = 30
PG_PASSWORD = "pg-Zq9-s3cret-never-logged"
CRASH_APP = "aap_crash_task"
ROUTE_TO_LOAD = [
    {
        "match": {"schema_title": "RouteDecision"},
        "reply": {"kind": "json", "value": {"route": "load", "rationale": "minor", "confidence": 0.9}},
    }
]


@dataclass
class FaultsAirflow:
    """A running Celery topology and what the tests need to reach it."""

    base_url: str
    home: Path
    work: Path
    env: dict[str, str]
    warehouse_url: str
    days: list[str]
    receivers: Receivers
    procs: dict[str, Proc] = field(default_factory=dict)
    startup_s: float = 0.0
    _api: AirflowApi | None = None

    @property
    def api(self) -> AirflowApi:
        if self._api is None:
            self._api = AirflowApi(self.base_url)
        return self._api

    def warehouse(self) -> sa.Engine:
        return sa.create_engine(self.warehouse_url)

    def log_files(self) -> list[Path]:
        return sorted(p for p in (self.home / "logs").rglob("*") if p.is_file())


def backfill_days(today: date | None = None) -> list[str]:
    """``BACKFILL_DAYS`` consecutive days whose intervals ended at least two days ago."""
    last = (today or datetime.now(timezone.utc).date()) - timedelta(days=3)
    return [(last - timedelta(days=BACKFILL_DAYS - 1 - i)).isoformat() for i in range(BACKFILL_DAYS)]


def clear_queue(queue: str) -> None:
    """Delete this session's queue keys from the broker DB, and only those (another run may share the DB)."""
    import redis

    client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}", socket_timeout=5)
    try:
        for key in list(client.scan_iter(match=f"*{queue}*")):
            client.delete(key)
    finally:
        client.close()


def _pg(url: str, *, app: str | None = None, password: bool = False) -> str:
    """An Airflow postgres connection (JSON) for a loopback database; ``app`` names its sessions."""
    parsed = sa.make_url(url)
    extra: dict[str, Any] = {"sqlalchemy_query": {"application_name": app}} if app else {}
    conn = {"conn_type": "postgres", "host": parsed.host, "port": parsed.port, "login": "postgres"}
    conn |= {"schema": parsed.database, "extra": extra} | ({"password": PG_PASSWORD} if password else {})
    return json.dumps(conn)


def _start_fake_claude(work: Path, env: dict[str, str]) -> Proc:
    script, port_file = work / "claude_rules.json", work / "fake_claude.port"
    script.write_text(json.dumps(ROUTE_TO_LOAD))
    argv = [sys.executable, "-m", "airflow_agent_provider.testing.fake_claude", "--port-file", str(port_file)]
    proc = Proc("fake-claude", [*argv, "--script", str(script), "--api-key", KEY], env, work / "logs")
    wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "FakeClaude")
    conn = {"conn_type": "anthropic", "host": f"http://127.0.0.1:{port_file.read_text().strip()}", "password": KEY}
    env["AIRFLOW_CONN_ANTHROPIC_DEFAULT"] = json.dumps(conn)
    return proc


def _prepare(work: Path, env: dict[str, str], days: list[str]) -> None:
    """Migrate the metadata DB, seed the admin password, generate the backfill window's sample sources."""
    (work / "home").mkdir(parents=True)
    (work / "home" / "passwords.json").write_text(json.dumps({"admin": "admin"}))
    sample = [sys.executable, "scripts/sample_data.py", "--out", str(work / "sample"), "--start", days[0]]
    for argv in (["airflow", "db", "migrate"], [*sample, "--days", str(len(days))]):
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"


def _environment(
    work: Path, port: int, metadata_url: str, warehouse_url: str, receivers: Receivers, *, queue: str
) -> dict[str, str]:
    env = celery_env(work, port, metadata_url, warehouse_url, queue)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles(("faults-dags", str(FAULT_DAGS))),
            "AIRFLOW_CONN_AGENT_WAREHOUSE": _pg(warehouse_url),
            "AIRFLOW_CONN_FAULTS_SOURCE": _pg(warehouse_url, password=True),
            "AIRFLOW_CONN_FAULTS_WAREHOUSE": _pg(warehouse_url, password=True),
            "AIRFLOW_CONN_FAULTS_CRASH_WH": _pg(warehouse_url, app=CRASH_APP),
            # the crash test compares the table with what the run staged, read after the run succeeded
            "AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION": "keep",
            **receivers.connections(),
        }
    )
    return env


@contextlib.contextmanager
def celery_airflow() -> Iterator[FaultsAirflow]:
    """Start the topology; stop every process group it started, and check none is left."""
    work = fresh_workdir("faults-celery")
    days, queue = backfill_days(), f"aap_faults_{secrets.token_hex(4)}"
    receivers = Receivers(work / "receivers")
    procs: dict[str, Proc] = {}
    try:
        with fresh_pg_database("aap_faults_meta") as meta_url, fresh_pg_database("aap_faults_dw") as dw_url:
            port, started = free_port(), time.monotonic()
            env = _environment(work, port, meta_url, dw_url, receivers, queue=queue)
            _prepare(work, env, days)
            procs["users-api"] = start_users_api(work, env)
            procs["fake-claude"] = _start_fake_claude(work, env)
            procs.update(start_components(work, env, port, queue))
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(base_url, 240, alive=lambda: all(p.alive() for p in procs.values()))
            airflow = FaultsAirflow(base_url, work / "home", work, env, dw_url, days, receivers, procs)
            airflow.startup_s = time.monotonic() - started
            print(f"faults Celery topology ready in {elapsed(started)}")
            yield airflow
            survivors = stop_all(list(procs.values()))
            procs.clear()
            assert survivors == [], f"process groups still alive: {survivors}"
    finally:
        stop_all(list(procs.values()))
        assert receivers.stop() == []
        clear_queue(queue)
