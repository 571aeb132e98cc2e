"""Run a DAG with ``airflow dags test`` in its own process, the OpenLineage provider's listener on, and
read back what its file transport wrote.

A fresh process loads the provider's plugin (and with it the listener) exactly as a worker does;
the test's environment (connections, Variables, the tests' Airflow home and DAG folder) is passed on.
The process runs in its own group and is stopped by that group, also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.process._procs import ROOT, Proc

AIRFLOW = str(Path(sys.executable).parent / "airflow")
ARTIFACTS = ROOT / "test-artifacts" / "lineage"


def lineage_env(events: Path, **extra: str) -> dict[str, str]:
    """The test's environment with OpenLineage writing one JSON file per event under ``events``."""
    transport = {"type": "file", "log_file_path": str(events / "event"), "append": False}
    return {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "agent-tests",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def dags_test(
    name: str,
    dag_id: str,
    logical_date: str | None,
    work: Path,
    *,
    conf: dict[str, Any] | None = None,
    timeout: float = 300,
) -> list[dict[str, Any]]:
    """Run ``airflow dags test dag_id [logical_date] [-c conf]``; every event the listener emitted, by time.

    The events stay in ``test-artifacts/lineage/<name>/`` (one JSON file each) after the test.
    """
    events = ARTIFACTS / name
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    argv = [AIRFLOW, "dags", "test", dag_id, *([logical_date] if logical_date else [])]
    argv += ["-c", json.dumps(conf)] if conf else []
    proc = Proc(f"dags-test-{dag_id}", argv, lineage_env(events), work)
    try:
        code = proc.popen.wait(timeout=timeout)
    finally:
        proc.stop(grace=10)
    assert code in (0, 1), f"airflow dags test exited {code}:\n{proc.tail(60)}"
    found = [json.loads(path.read_text()) for path in sorted(events.glob("event*"))]
    assert found, f"no OpenLineage event was written:\n{proc.tail(60)}"
    return sorted(found, key=lambda event: event["eventTime"])


def task_event(events: list[dict[str, Any]], task_id: str, event_type: str) -> dict[str, Any]:
    """The one event of ``event_type`` (START, COMPLETE, FAIL) of a task of the run."""
    found = [e for e in events if e["eventType"] == event_type and e["job"]["name"].endswith(f".{task_id}")]
    assert len(found) == 1, f"{len(found)} {event_type} events for {task_id}: {[e['job']['name'] for e in events]}"
    return found[0]
