"""A REST client for a running Airflow, the clean environment its processes start from, and their work folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.process._procs import ROOT, Proc, Receivers, wait_until

ARTIFACTS = ROOT / "test-artifacts"

REFERENCE_DAG = "daily_user_engagement"
# The tasks a healthy day of the reference DAG runs; every other task (the remediation routes) is skipped.
HAPPY_PATH = {
    "extract_events",
    "extract_users",
    "extract_campaigns",
    "validate_events",
    "validate_users",
    "validate_campaigns",
    "route",
    "transform",
    "load",
    "report",
}
FINAL_RUN_STATES = ("success", "failed")
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


def clean_env(**overrides: str) -> dict[str, str]:
    """``os.environ`` without the test session's Airflow/provider settings, plus ``overrides``.

    tests/conftest.py points AIRFLOW_HOME and the DAGs folder at the dag.test() sandbox; a process
    topology must not inherit that.
    """
    drop = ("AIRFLOW_", "AGENT_PROVIDER_", "AGENT_UI_", "AGENT_ALERT_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({"PYTHONUNBUFFERED": "1", "AGENT_PROVIDER_HOME": str(ROOT)}, **overrides)
    return env


PG_ADMIN_DSN = os.environ.get("AGENT_PROVIDER_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new database on the loopback PostgreSQL (a SQLAlchemy URL), dropped afterwards."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def bundles(*extra: tuple[str, str]) -> str:
    """``[dag_processor] dag_bundle_config_list``: the DAGs folder plus ``(name, path)`` folders."""
    import json

    items = [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}}]
    items += [{"name": name, "classpath": LOCAL_BUNDLE, "kwargs": {"path": path}} for name, path in extra]
    return json.dumps(items)


class AirflowApi:
    """The REST API v2 with a bearer token from ``POST /auth/token``."""

    def __init__(self, base_url: str, username: str = "admin", password: str = "admin") -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        response = self.session.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        assert response.status_code == 201, f"token: HTTP {response.status_code} {response.text[:300]}"
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        assert response.status_code == expect, f"{method} {path}: HTTP {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        def parsed() -> Any:
            response = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=30)
            return response.json() if response.status_code == 200 else None

        return wait_until(parsed, timeout, f"DAG {dag_id} to be parsed", interval=1)

    def unpause(self, dag_id: str) -> None:
        self.wait_for_dag(dag_id)
        body = self.call("PATCH", f"/dags/{dag_id}?update_mask=is_paused", json={"is_paused": False})
        assert body["is_paused"] is False

    def trigger(self, dag_id: str, run_id: str, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "dag_run_id": run_id, **body}
        )
        return result

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        return result

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        def finished() -> Any:
            run = self.run(dag_id, run_id)
            return run if run["state"] in FINAL_RUN_STATES else None

        result: dict[str, Any] = wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish", interval=2)
        return result

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.call("GET", path)["value"]

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = self.call("GET", f"/backfills?dag_id={dag_id}")
        return list(body["backfills"])

    def runs(self, dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
        query = f"?limit=100&run_type={run_type}" if run_type else "?limit=100"
        return list(self.call("GET", f"/dags/{dag_id}/dagRuns{query}")["dag_runs"])


def wait_healthy(base_url: str, timeout: float, alive: Any = None) -> None:
    """Wait for ``/api/v2/monitor/health`` to answer 200 (fail early when ``alive()`` turns False)."""
    import requests

    def healthy() -> bool:
        if alive is not None and not alive():
            raise RuntimeError("a component exited before the API server became healthy")
        try:
            return requests.get(f"{base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, timeout, f"{base_url} to be healthy", interval=1)


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f}s"


def fresh_workdir(name: str) -> Path:
    """``test-artifacts/process/<name>``, emptied: the processes' logs stay there for a post-mortem."""
    work = ARTIFACTS / "process" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


@dataclass
class LocalAirflow:
    """A running ``scripts/ui.sh`` and what the tests need to reach it."""

    base_url: str
    home: Path
    var: Path
    env: dict[str, str]
    receivers: Receivers
    ui: Proc
    component_pids: dict[str, int] = field(default_factory=dict)
    startup_s: float = 0.0
    _api: AirflowApi | None = None

    @property
    def api(self) -> AirflowApi:
        if self._api is None:
            self._api = AirflowApi(self.base_url)
        return self._api

    @property
    def warehouse(self) -> Path:
        return self.var / "warehouse.db"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the same environment as the running components."""
        script = 'source scripts/airflow_env.sh && exec airflow "$@"'
        return subprocess.run(
            ["bash", "-c", script, "airflow", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
