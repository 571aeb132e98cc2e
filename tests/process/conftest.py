"""Fixtures of the real-process tests: a local Airflow started by ``scripts/ui.sh`` (what ``make ui`` runs).

One Airflow per test module (LocalExecutor, a fresh PostgreSQL metadata DB: SQLite's single writer
makes the CLI's backfill writes collide with the scheduler's, the reference DAG plus
``tests/process_dags``), on free loopback ports, with the alert receivers as their own processes.
Everything is stopped by process group id at the end, and the test checks the groups are gone.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process._airflow import (
    ARTIFACTS,
    LocalAirflow,
    bundles,
    clean_env,
    elapsed,
    fresh_pg_database,
    fresh_workdir,
    wait_healthy,
)
from tests.process._procs import ROOT, Proc, Receivers, free_port, group_alive, wait_until

STARTUP_TIMEOUT = 240

# Snappy scheduling for tests; no scheduled runs (only the ones the tests create).
SNAPPY = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
}


def _component_pids(run_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")}


@pytest.fixture(scope="module")
def local_airflow() -> Iterator[LocalAirflow]:
    with fresh_pg_database("aap_local_meta") as metadata_url:
        yield from _local_airflow(metadata_url)


def _local_airflow(metadata_url: str) -> Iterator[LocalAirflow]:
    work = fresh_workdir("local-airflow")
    receivers = Receivers(work / "receivers")
    port = free_port()
    env = clean_env(
        AIRFLOW_HOME=str(work / "home"),
        AIRFLOW_UI_PORT=str(port),
        AGENT_UI_VAR=str(work / "var"),
        AGENT_PROVIDER_STAGING_ROOT=str(work / "staging"),
        AGENT_UI_SAMPLE_DAYS="12",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
        AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=bundles(("process-dags", str(ROOT / "tests/process_dags"))),
        **SNAPPY,
        **receivers.connections(),
    )
    started = time.monotonic()
    ui = Proc("ui", ["bash", str(ROOT / "scripts" / "ui.sh")], env, work)
    airflow = LocalAirflow(f"http://127.0.0.1:{port}", work / "home", work / "var", env, receivers, ui)
    try:
        wait_until(lambda: (work / "home/run/ui.ready").exists() or not ui.alive(), STARTUP_TIMEOUT, "ui.sh")
        assert ui.alive(), f"ui.sh exited:\n{ui.tail()}"
        wait_healthy(airflow.base_url, 30)
        airflow.component_pids = _component_pids(work / "home/run")
        airflow.startup_s = time.monotonic() - started
        print(f"local Airflow (ui.sh) ready in {elapsed(started)}: {sorted(airflow.component_pids)}")
        yield airflow
    finally:
        pids = airflow.component_pids or _component_pids(work / "home/run")
        exit_code = ui.stop(grace=60, sig=signal.SIGINT)  # what Ctrl-C sends to `make ui`
        stragglers = [name for name, pid in pids.items() if group_alive(pid)]
        leftovers = receivers.stop()
    assert stragglers == [], f"process groups still alive after Ctrl-C on ui.sh: {stragglers}"
    assert exit_code == 130, f"ui.sh did not stop through its Ctrl-C trap (exit {exit_code}):\n{ui.tail()}"
    assert leftovers == [], f"receivers still alive: {leftovers}"


@pytest.fixture(scope="module")
def reference_dag(local_airflow: LocalAirflow) -> str:
    """The reference DAG, parsed and unpaused."""
    from tests.process._airflow import REFERENCE_DAG

    local_airflow.api.unpause(REFERENCE_DAG)
    return REFERENCE_DAG


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
