"""The reference DAG end to end on generated sample data: a day, its re-run, a dateless run, a bad day."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scripts.demo_http_server import serve
from scripts.sample_data import generate
from tests.conftest import run_dag, task_states, xcom

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "daily_user_engagement"
BAD_DAY = date(2026, 11, 12)
HAPPY = {
    **dict.fromkeys(["extract_events", "extract_users", "extract_campaigns"], "success"),
    **dict.fromkeys(["validate_events", "validate_users", "validate_campaigns"], "success"),
    **dict.fromkeys(["route", "transform", "load", "report"], "success"),
    "abort": "skipped",
}


class Sample:
    """Generated sources and the warehouse of one test module."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.warehouse = root / "warehouse.db"
        self.reports = root / "reports"

    def events_db(self, name: str) -> Path:
        return self.root / name / "events.db"

    def warehouse_rows(self, sql: str = "SELECT * FROM user_engagement_daily ORDER BY user_id, date") -> list[Any]:
        with sqlite3.connect(self.warehouse) as con:
            return con.execute(sql).fetchall()

    def loaded_on(self, day: date) -> int:
        """Warehouse rows of ``day`` (0 when nothing was ever loaded)."""
        if not self.warehouse.exists():
            return 0
        with sqlite3.connect(self.warehouse) as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'user_engagement_daily'").fetchone():
                return 0
            return int(
                con.execute("SELECT count(*) FROM user_engagement_daily WHERE date = ?", (str(day),)).fetchone()[0]
            )

    def users_active_on(self, day: date, sample: str = "fixed") -> int:
        with sqlite3.connect(self.events_db(sample)) as con:
            query = "SELECT count(DISTINCT user_id) FROM events WHERE user_id IS NOT NULL AND event_ts LIKE ?"
            return int(con.execute(query, (f"{day.isoformat()}%",)).fetchone()[0])


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sample]:
    root = tmp_path_factory.mktemp("reference")
    generate(root / "fixed", date(2026, 11, 8), 6, 200, bad_day=BAD_DAY)
    today = datetime.now(timezone.utc).date()
    generate(root / "recent", today - timedelta(days=2), 3, 200)
    users = json.loads((root / "fixed" / "users.json").read_text())
    server = serve(users)
    yield Sample(root, server.server_port)
    server.shutdown()
    server.server_close()


@pytest.fixture
def reference_env(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> Sample:
    """Connections and variables of the reference DAG, pointing at the fixed-dates sample."""
    api = {"conn_type": "http", "host": "127.0.0.1", "port": sample.port}
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_SOURCES_DB", f"sqlite:///{sample.events_db('fixed')}")
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_USERS_API", json.dumps(api))
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_WAREHOUSE", f"sqlite:///{sample.warehouse}")
    monkeypatch.setenv("AIRFLOW_VAR_AGENT_SAMPLE_DIR", str(sample.root / "fixed"))
    monkeypatch.setenv("AIRFLOW_VAR_AGENT_REPORTS_DIR", str(sample.reports))
    return sample


@pytest.fixture
def alert_webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A loopback Slack-compatible webhook named by the DAG's alert Variable; yields the alerts received."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = {"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}/hooks/alerts"}
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_ALERTS", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_VAR_AGENT_ALERT_WEBHOOK_CONN_ID", "agent_alerts")
    yield received
    server.shutdown()
    server.server_close()


def _checksum(rows: list[Any]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


class TestDailyUserEngagement:
    def test_a_day_loads_once_and_a_rerun_leaves_the_warehouse_identical(self, reference_env: Sample) -> None:
        sample = reference_env
        run = run_dag(DAG_ID, "2026-11-10")

        assert task_states(run) == HAPPY
        expected_users = sample.users_active_on(date(2026, 11, 9))
        assert xcom(run, "load")["metrics"]["rows_loaded"] == expected_users
        assert xcom(run, "route", key="decision")["route"] == "transform"
        first = sample.warehouse_rows()
        assert {row[1] for row in first} == {"2026-11-09"}
        assert len(first) == expected_users
        assert any(row[-1] == 1 for row in first), "the heavy users of the day are flagged"
        report = xcom(run, "report")
        assert (report["status"], report["rows_loaded"], report["usage"]["model_calls"]) == (
            "success",
            expected_users,
            0,
        )
        assert report["decisions"][0]["route"] == "transform"
        assert json.loads(next(sample.reports.glob("daily_user_engagement__*.json")).read_text()) == report

        again = run_dag(DAG_ID, "2026-11-10")

        assert task_states(again) == HAPPY
        assert _checksum(sample.warehouse_rows()) == _checksum(first)

    def test_a_manual_run_without_a_logical_date_loads_the_day_before(
        self, reference_env: Sample, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sample = reference_env
        monkeypatch.setenv("AIRFLOW_CONN_AGENT_SOURCES_DB", f"sqlite:///{sample.events_db('recent')}")
        run = run_dag(DAG_ID, logical_date=None)

        assert run.logical_date is None
        assert task_states(run) == HAPPY
        day = (run.run_after.astimezone(timezone.utc) - timedelta(days=1)).date()
        assert sample.loaded_on(day) == sample.users_active_on(day, "recent") > 0

    def test_a_bad_day_is_routed_to_abort_alerts_and_loads_nothing(
        self, reference_env: Sample, alert_webhook: list[dict[str, Any]]
    ) -> None:
        sample = reference_env
        run = run_dag(DAG_ID, (BAD_DAY + timedelta(days=1)).isoformat())

        states = task_states(run)
        assert states["validate_events"] == "success"
        assert (states["route"], states["abort"], states["report"]) == ("success", "failed", "success")
        assert (states["transform"], states["load"]) == ("skipped", "skipped")
        validation = xcom(run, "validate_events")
        assert validation["status"] == "fail"
        assert {i["rule"] for i in validation["issues"]} == {
            "in_list(event_type)",
            "not_null(user_id)",
            "range(revenue)",
        }
        assert xcom(run, "route", key="decision")["route"] == "abort"
        report = xcom(run, "report")
        assert report["status"] == "failed"
        assert report["stages"]["validate_events"]["issues"] == len(validation["issues"])
        assert sample.loaded_on(BAD_DAY) == 0
        assert len(alert_webhook) == 1
        assert "abort" in alert_webhook[0]["text"]
