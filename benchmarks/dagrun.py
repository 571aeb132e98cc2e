"""The agent economy of real Airflow runs: the reference DAG, a healthy day and a failing day.

What ``make demo`` does, isolated under ``var/bench/dagrun`` (its own Airflow home, sample data,
warehouse, staging and reports): ``airflow dags test daily_user_engagement`` for a healthy day and
for the day ``scripts/sample_data.py`` breaks, with the ``anthropic_default`` connection pointed at
FakeClaude (answers from ``scripts/demo_claude_script.json``). Counted: the requests that reached
FakeClaude during each run, and the run's usage and cost from its pipeline report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.probes import airflow_env
from benchmarks.workload import REPO, bench_dir

HEALTHY_RUN = "2026-11-10"  # loads 2026-11-09
FAILING_RUN = "2026-11-13"  # loads 2026-11-12, the day sample_data.py breaks
BAD_DAY = "2026-11-12"
API_KEY = "demo-fake-key"


def measure() -> dict[str, Any]:
    """Both runs' model calls, tokens and cost; ``{"error": ...}`` when a step fails."""
    from airflow_agent_provider.testing import FakeClaude

    home = bench_dir() / "dagrun"
    shutil.rmtree(home, ignore_errors=True)
    sample = home / "sample"
    _run([sys.executable, "scripts/sample_data.py", "--out", str(sample), "--start", "2026-11-01", "--days", "14",
          "--bad-day", BAD_DAY], {})  # fmt: skip
    users_api = _users_api(sample, home / "users.port")
    try:
        with FakeClaude.from_script(REPO / "scripts" / "demo_claude_script.json", api_key=API_KEY) as fake:
            env = _env(home, sample, fake.url, users_api[1])
            _run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env)
            return {
                label: _day(fake, env, home, day) for label, day in (("healthy", HEALTHY_RUN), ("failing", FAILING_RUN))
            }
    finally:
        users_api[0].terminate()
        users_api[0].wait(timeout=10)


def _run(command: list[str], env: dict[str, str], timeout: float = 900) -> None:
    proc = subprocess.run(
        command, cwd=REPO, env=env or None, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(command[:4])} failed (exit {proc.returncode}): {tail}")


def _users_api(sample: Path, port_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "scripts/demo_http_server.py", "--data", str(sample / "users.json"), "--port-file",
               str(port_file)]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            return proc, int(port_file.read_text())
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the demo users API did not start")


def _env(home: Path, sample: Path, claude_url: str, users_port: int) -> dict[str, str]:
    connections = {
        "AIRFLOW_CONN_AGENT_SOURCES_DB": f"sqlite:///{sample / 'events.db'}",
        "AIRFLOW_CONN_AGENT_USERS_API": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": users_port}),
        "AIRFLOW_CONN_AGENT_WAREHOUSE": f"sqlite:///{home / 'warehouse.db'}",
        "AIRFLOW_CONN_ANTHROPIC_DEFAULT": json.dumps(
            {"conn_type": "anthropic", "host": claude_url, "password": API_KEY}
        ),
    }
    env = airflow_env(**connections)
    return env | {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW_VAR_AGENT_SAMPLE_DIR": str(sample),
        "AIRFLOW_VAR_AGENT_REPORTS_DIR": str(home / "reports"),
        "AGENT_PROVIDER_STAGING_ROOT": str(home / "staging"),
    }


def _day(fake: Any, env: dict[str, str], home: Path, day: str) -> dict[str, Any]:
    before, seen = len(fake.messages_requests), set((home / "reports").glob("*.json"))
    started = time.perf_counter()
    _run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "daily_user_engagement", day], env)
    took = round(time.perf_counter() - started, 1)
    reports = sorted(set((home / "reports").glob("*.json")) - seen)
    if len(reports) != 1:
        raise RuntimeError(f"the run of {day} wrote {len(reports)} pipeline reports under {home / 'reports'}, not 1")
    doc = json.loads(reports[0].read_text())
    decision = (doc.get("decisions") or [{}])[0]
    return {
        "run": day,
        "status": doc["status"],
        "route": decision.get("route"),
        "requests_to_claude": len(fake.messages_requests) - before,
        "usage": doc["usage"],
        "rows_loaded": doc["rows_loaded"],
        "airflow_dags_test_s": took,
    }
