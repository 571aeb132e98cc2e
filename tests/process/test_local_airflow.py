"""The local Airflow of ``make ui``, driven like a user: REST, the UI in headless chromium, backfills, alerts.

One Airflow (``scripts/ui.sh``: LocalExecutor, SQLite metadata) serves the whole module; see conftest.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.process._airflow import HAPPY_PATH, REFERENCE_DAG, LocalAirflow
from tests.process._procs import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ALERT_DAG = "alert_stage_failure"


def warehouse_rows(path: Path, dates: list[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(dates))
    with sqlite3.connect(path) as con:
        query = f"SELECT * FROM user_engagement_daily WHERE date IN ({marks}) ORDER BY user_id, date"
        return con.execute(query, dates).fetchall()


def checksum(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def states(airflow: LocalAirflow, dag_id: str, run_id: str) -> dict[str, str]:
    return {task: ti["state"] for task, ti in airflow.api.task_instances(dag_id, run_id).items()}


def healthy_day(task_ids: set[str]) -> dict[str, str]:
    """The states of a healthy day: the happy path succeeded, every remediation route was skipped."""
    return {task: "success" if task in HAPPY_PATH else "skipped" for task in task_ids | HAPPY_PATH}


def previous_day(run_after: str) -> str:
    """The day a run without a logical date processes: the day before ``run_after`` (UTC)."""
    when = datetime.fromisoformat(run_after.replace("Z", "+00:00")).astimezone(timezone.utc)
    return (when.date() - timedelta(days=1)).isoformat()


@pytest.fixture(scope="module")
def early_runs(local_airflow: LocalAirflow, reference_dag: str) -> dict[str, str]:
    """The REST run and the alert run, triggered up front so they run while the UI test runs its own."""
    api = local_airflow.api
    local_airflow.receivers.clear()
    rest = api.trigger(reference_dag, "rest_no_logical_date", conf={"source": "rest"})
    assert rest["logical_date"] is None
    api.unpause(ALERT_DAG)
    alert = api.trigger(ALERT_DAG, "alert_run")
    return {"rest": rest["dag_run_id"], "alert": alert["dag_run_id"]}


@pytest.mark.timeout(600)  # includes starting the module's Airflow
class TestLocalAirflow:
    def test_every_listening_socket_is_on_loopback(self, local_airflow: LocalAirflow) -> None:
        import psutil

        groups = set(local_airflow.component_pids.values())
        assert {"api-server", "scheduler", "dag-processor", "triggerer", "users-api"} <= set(
            local_airflow.component_pids
        )
        ours = [p for p in psutil.process_iter() if _pgid(p.pid) in groups]
        listening = {(c.laddr.ip, c.laddr.port) for p in ours for c in _tcp(p) if c.status == psutil.CONN_LISTEN}
        assert ("127.0.0.1", int(local_airflow.base_url.rsplit(":", 1)[1])) in listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _tcp(process: Any) -> list[Any]:
    import psutil

    try:
        return list(process.net_connections(kind="tcp"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@pytest.mark.timeout(600)
class TestUi:
    def test_trigger_from_the_ui_and_watch_the_run_succeed(
        self, local_airflow: LocalAirflow, reference_dag: str, artifacts: Path, early_runs: dict[str, str]
    ) -> None:
        from playwright.sync_api import sync_playwright

        shot = artifacts / "ui-run-success.png"
        shot.unlink(missing_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                run_id = _trigger_in_ui(page, local_airflow.base_url, reference_dag)
                state = _watch_run_state(page, f"{local_airflow.base_url}/dags/{reference_dag}/runs/{quote(run_id)}")
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()

        assert state == "Success"
        assert shot.stat().st_size > 10_000
        run = local_airflow.api.run(reference_dag, run_id)
        assert (run["state"], run["triggered_by"], run["triggering_user_name"]) == ("success", "ui", "admin")


def _trigger_in_ui(page: Any, base_url: str, dag_id: str) -> str:
    """Log in, open the DAG, trigger it with the form's defaults; the new run's id."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/dags/{dag_id}**")
    page.get_by_role("button", name="Trigger Dag").click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()
    link = page.get_by_role("link", name=re.compile(r"^manual__"))
    link.first.wait_for(timeout=30_000)
    return str(link.first.inner_text()).strip()


def _watch_run_state(page: Any, run_url: str, timeout: float = 300) -> str:
    """Reload the run's Details tab until its State row shows a final state; that state."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        page.goto(f"{run_url}/details")
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="State", exact=True))
        row.first.wait_for(timeout=30_000)
        state = str(row.first.inner_text()).replace("State", "").strip()
        if state in ("Success", "Failed"):
            return state
        time.sleep(3)
    return state


class TestRestApi:
    def test_run_without_logical_date_succeeds_and_records_the_route(
        self, local_airflow: LocalAirflow, reference_dag: str, early_runs: dict[str, str]
    ) -> None:
        api, run_id = local_airflow.api, early_runs["rest"]

        final = api.wait_for_run(reference_dag, run_id)

        assert final["state"] == "success"
        assert final["logical_date"] is None
        task_states = states(local_airflow, reference_dag, run_id)
        assert task_states == healthy_day(set(task_states))
        decision = api.xcom(reference_dag, run_id, "route", "decision")
        assert decision["route"] == "transform"
        report = api.xcom(reference_dag, run_id, "report")
        assert report["status"] == "success"
        rows = warehouse_rows(local_airflow.warehouse, [previous_day(final["run_after"])])
        assert len(rows) == report["rows_loaded"] > 0


class TestFailureAlerts:
    def test_final_failure_after_a_retry_sends_one_post_and_one_mail(
        self, local_airflow: LocalAirflow, early_runs: dict[str, str]
    ) -> None:
        api, receivers, run_id = local_airflow.api, local_airflow.receivers, early_runs["alert"]

        final = api.wait_for_run(ALERT_DAG, run_id, timeout=180)
        time.sleep(3)  # a duplicate alert would have arrived by now

        assert final["state"] == "failed"
        load = api.task_instances(ALERT_DAG, run_id)["load"]
        assert (load["state"], load["try_number"]) == ("failed", 2)
        [hook], [mail] = receivers.hooks(), receivers.mails()
        text = json.loads(hook["body"])["text"]
        for body in (text, mail["body"]):
            assert ALERT_DAG in body and run_id in body
            assert "postgresql://***@warehouse:5432/dw" in body
            assert "validate_events: null_rate_exceeded on events.user_id: 12 rows" in body
            assert "route → quarantine_rows" in body
            assert f"{local_airflow.base_url}/dags/{ALERT_DAG}/runs/{run_id}/tasks/load" in body
            assert "s3cret-pw" not in body
        assert "Stage: load" in text
        assert mail["subject"] == f"[Airflow] load stage failed: {ALERT_DAG}.load"
        assert mail["rcpt_tos"] == ["oncall@example.com"]


@pytest.mark.timeout(1200)
class TestBackfill:
    def test_backfill_then_reprocess_leaves_the_warehouse_identical(
        self, local_airflow: LocalAirflow, reference_dag: str
    ) -> None:
        api = local_airflow.api
        first = date.today() - timedelta(days=10)
        days = [(first + timedelta(days=i)).isoformat() for i in range(3)]
        window = {"dag_id": reference_dag, "from_date": f"{days[0]}T00:00:00Z", "to_date": f"{days[-1]}T00:00:00Z"}
        dry = api.call("POST", "/backfills/dry_run", json=window)
        assert [b["logical_date"][:10] for b in dry["backfills"]] == days

        self._backfill(local_airflow, days)
        runs = {r["logical_date"][:10]: r for r in api.runs(reference_dag, "backfill")}
        assert {d: runs[d]["state"] for d in days} == dict.fromkeys(days, "success")
        rows = warehouse_rows(local_airflow.warehouse, days)
        keys = {(row[0], row[1]) for row in rows}
        assert len(keys) == len(rows)
        assert {row[1] for row in rows} == set(days)

        self._backfill(local_airflow, days, "--reprocess-behavior", "completed")
        again = {r["logical_date"][:10]: r for r in api.runs(reference_dag, "backfill")}
        assert {d: again[d]["state"] for d in days} == dict.fromkeys(days, "success")
        assert all(again[d]["end_date"] > runs[d]["end_date"] for d in days), "the second backfill re-ran nothing"
        assert checksum(warehouse_rows(local_airflow.warehouse, days)) == checksum(rows)

    def _backfill(self, airflow: LocalAirflow, days: list[str], *options: str) -> dict[str, Any]:
        before = {b["id"] for b in airflow.api.backfills(REFERENCE_DAG)}
        done = airflow.cli(
            "backfill",
            "create",
            "--dag-id",
            REFERENCE_DAG,
            "--from-date",
            days[0],
            "--to-date",
            days[-1],
            "--max-active-runs",
            "3",
            *options,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        [created] = [b for b in airflow.api.backfills(REFERENCE_DAG) if b["id"] not in before]

        def completed() -> Any:
            current = next(b for b in airflow.api.backfills(REFERENCE_DAG) if b["id"] == created["id"])
            return current if current["completed_at"] else None

        result: dict[str, Any] = wait_until(completed, 540, f"backfill {created['id']} to complete", interval=3)
        return result
