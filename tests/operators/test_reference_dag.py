"""The reference DAG end to end on generated sample data, Claude played by FakeClaude.

Six real runs: a healthy day and its re-run (no model call, though Claude is reachable), a run without
a logical date, a bad day Claude routes to ``quarantine`` and its re-run without Claude (the fallback,
also ``quarantine``), and a bad day Claude escalates to a person.
"""

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

from airflow_agent_provider.contracts import Usage
from airflow_agent_provider.testing import FakeClaude, Reply
from scripts.demo_http_server import serve
from scripts.sample_data import generate
from tests.agents.support import claude_conn, fake
from tests.objectstore import S3Staging
from tests.process._procs import wait_until
from tests.support.dags import run_dag, task_states, xcom

__all__ = ["claude_conn", "fake"]

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "daily_user_engagement"
BAD_DAY = date(2026, 11, 12)
ROUTES = ["abort", "escalate", "quarantine", "remediate_schema", "transform"]
SKIPPED_REMEDIATION = dict.fromkeys(["remediate_schema", "quarantine", "escalate", "abort"], "skipped")
HAPPY = {
    **dict.fromkeys(["extract_events", "extract_users", "extract_campaigns"], "success"),
    **dict.fromkeys(["validate_events", "validate_users", "validate_campaigns"], "success"),
    **dict.fromkeys(["route", "transform", "load", "report"], "success"),
    **SKIPPED_REMEDIATION,
}
QUARANTINED = {**HAPPY, "quarantine": "success"}
# the rows the sample's bad day breaks (sample_data.day_events): what quarantine must take, no more
BROKEN = (
    "(user_id IS NULL OR event_type NOT IN ('page_view', 'click', 'add_to_cart', 'purchase') "
    "OR coalesce(revenue, 0) < 0)"
)
DIAGNOSIS = {
    "summary": "About 6% of the day's events break three row rules.",
    "likely_cause": "A client release sending a new event type and dropping user ids.",
    "recommendation": "Quarantine the broken rows and load the rest.",
    "severity": "medium",
}
QUARANTINE_ROUTE = {"route": "quarantine", "rationale": "Bad rows are a small minority; keep them.", "confidence": 0.9}


class Sample:
    """Generated sources of the test module, and the warehouse and reports folder of one test."""

    def __init__(self, root: Path, port: int, work: Path | None = None) -> None:
        self.root, self.port = root, port
        self.warehouse = (work or root) / "warehouse.db"
        self.reports = (work or root) / "reports"

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

    def source(self, sql: str, day: date, sample: str = "fixed") -> list[Any]:
        """Rows of a query over the source events of ``day`` (``{day}`` in ``sql`` is the day's filter)."""
        with sqlite3.connect(self.events_db(sample)) as con:
            return con.execute(sql.format(day="event_ts LIKE ?"), (f"{day.isoformat()}%",)).fetchall()

    def users_active_on(self, day: date, sample: str = "fixed") -> int:
        query = "SELECT count(DISTINCT user_id) FROM events WHERE user_id IS NOT NULL AND {day}"
        return int(self.source(query, day, sample)[0][0])


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
def reference_env(sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sample:
    """Connections and variables of the reference DAG: the fixed-dates sample, this test's own warehouse."""
    env = Sample(sample.root, sample.port, tmp_path)
    api = {"conn_type": "http", "host": "127.0.0.1", "port": sample.port}
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_SOURCES_DB", f"sqlite:///{sample.events_db('fixed')}")
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_USERS_API", json.dumps(api))
    monkeypatch.setenv("AIRFLOW_CONN_AGENT_WAREHOUSE", f"sqlite:///{env.warehouse}")
    monkeypatch.setenv("AIRFLOW_VAR_AGENT_SAMPLE_DIR", str(sample.root / "fixed"))
    monkeypatch.setenv("AIRFLOW_VAR_AGENT_REPORTS_DIR", str(env.reports))
    return env


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


def _titles(claude: FakeClaude) -> list[str]:
    return [r.json["output_config"]["format"]["schema"]["title"] for r in claude.messages_requests]


def _bad_day_run() -> Any:
    return run_dag(DAG_ID, (BAD_DAY + timedelta(days=1)).isoformat())


class TestDailyUserEngagement:
    def test_a_healthy_day_asks_claude_nothing_and_a_rerun_leaves_the_warehouse_identical(
        self, reference_env: Sample, claude_conn: FakeClaude
    ) -> None:
        sample = reference_env
        run = run_dag(DAG_ID, "2026-11-10")

        assert task_states(run) == HAPPY
        assert claude_conn.messages_requests == []
        expected_users = sample.users_active_on(date(2026, 11, 9))
        assert xcom(run, "load")["metrics"]["rows_loaded"] == expected_users
        decision = xcom(run, "route", key="decision")
        assert (decision["route"], decision["fallback_used"], decision["model"]) == ("transform", False, None)
        assert decision["options"] == ROUTES and decision["usage"]["model_calls"] == 0
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
        assert claude_conn.messages_requests == []

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

    def test_a_bad_day_is_quarantined_on_claudes_route_and_again_on_the_fallback_without_claude(
        self, reference_env: Sample, claude_conn: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sample = reference_env
        claude_conn.add(Reply.json(DIAGNOSIS), match={"schema_title": "Diagnosis"})
        claude_conn.add(Reply.json(QUARANTINE_ROUTE), match={"schema_title": "RouteDecision"})
        broken = sample.source(f"SELECT event_id FROM events WHERE {{day}} AND {BROKEN} ORDER BY 1", BAD_DAY)
        [(clean_users,)] = sample.source(
            f"SELECT count(DISTINCT user_id) FROM events WHERE {{day}} AND NOT {BROKEN}", BAD_DAY
        )
        run = _bad_day_run()

        assert task_states(run) == QUARANTINED
        assert _titles(claude_conn) == ["Diagnosis", "RouteDecision"]
        assert xcom(run, "validate_events")["diagnosis"] == DIAGNOSIS
        decision = xcom(run, "route", key="decision")
        assert (decision["route"], decision["rationale"], decision["fallback_used"]) == (
            "quarantine",
            QUARANTINE_ROUTE["rationale"],
            False,
        )
        assert decision["model"] == "claude-sonnet-4-6" and decision["usage"]["model_calls"] == 1
        metrics = xcom(run, "quarantine")["metrics"]
        assert (metrics["rows_quarantined"], metrics["quarantine_rows_loaded"]) == (len(broken), len(broken))
        quarantined_ids = "SELECT CAST(event_id AS INTEGER) FROM events_quarantine ORDER BY 1"
        assert sample.warehouse_rows(quarantined_ids) == broken  # the table holds the values as text
        assert sample.loaded_on(BAD_DAY) == clean_users > 0
        report = xcom(run, "report")
        assert (report["status"], report["rows_loaded"]) == ("partial", clean_users)
        assert report["usage"]["model_calls"] == 2 and report["usage"]["cost_usd"] > 0
        assert report["decisions"] == [decision]
        counts = [name for name in Usage.model_fields if name != "cost_usd"]
        for usage in (decision["usage"], report["usage"], report["stages"]["validate_events"]["usage"]):
            assert all(type(usage[count]) is int for count in counts), usage  # counts are integers in XCom
        stage = report["stages"]["quarantine"]
        assert (stage["rows_in"], stage["rows_out"], stage["rows_quarantined"]) == (
            metrics["rows_before"], metrics["rows_after"], len(broken)
        )  # fmt: skip
        assert stage["rows"] == stage["rows_out"] == stage["rows_in"] - len(broken)
        loaded = _checksum(sample.warehouse_rows())
        quarantined = _checksum(_quarantined_values(sample))

        monkeypatch.delenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT")
        again = _bad_day_run()

        assert task_states(again) == QUARANTINED
        assert len(claude_conn.messages_requests) == 2
        fallback = xcom(again, "route", key="decision")
        assert (fallback["route"], fallback["fallback_used"]) == ("quarantine", True)
        assert fallback["fallback_reason"].startswith("no_credentials: ")
        assert any(
            w.startswith("diagnosis unavailable (no_credentials)") for w in xcom(again, "validate_events")["warnings"]
        )
        assert _checksum(sample.warehouse_rows()) == loaded
        assert _checksum(_quarantined_values(sample)) == quarantined  # the same rows; the run columns name the re-run

    def test_a_bad_day_claude_escalates_alerts_and_loads_nothing(
        self, reference_env: Sample, claude_conn: FakeClaude, alert_webhook: list[dict[str, Any]]
    ) -> None:
        sample = reference_env
        why = "A new event type appeared overnight; someone should confirm it before loading."
        claude_conn.add(
            Reply.json({"route": "escalate", "rationale": why, "confidence": 0.7}),
            match={"schema_title": "RouteDecision"},
        )
        run = _bad_day_run()

        states = task_states(run)
        assert (states["route"], states["escalate"], states["report"]) == ("success", "failed", "failed")
        assert run.state == "failed"  # the report fails the run once it is written: no green run on escalation
        assert xcom(run, "report")["status"] == "failed"
        assert {states[t] for t in ("remediate_schema", "quarantine", "abort", "transform", "load")} == {"skipped"}
        validation = xcom(run, "validate_events")
        assert validation["status"] == "fail"
        assert {i["rule"] for i in validation["issues"]} == {
            "in_list(event_type)",
            "not_null(user_id)",
            "range(revenue)",
        }
        assert xcom(run, "route", key="decision")["route"] == "escalate"
        report = xcom(run, "report")
        assert report["status"] == "failed" and report["rows_loaded"] == 0
        assert report["stages"]["validate_events"]["issues"] == len(validation["issues"])
        assert sample.loaded_on(BAD_DAY) == 0
        assert len(alert_webhook) == 1
        assert "escalate" in alert_webhook[0]["text"] and why in alert_webhook[0]["text"]


class TestDailyUserEngagementOnS3:
    def test_a_healthy_day_staged_in_s3_loads_the_day_and_leaves_no_staged_data(
        self, reference_env: Sample, claude_conn: FakeClaude, s3_staging: S3Staging, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", s3_staging.root)
        run = run_dag(DAG_ID, "2026-11-10")

        assert task_states(run) == HAPPY
        staged = [ref["uri"] for ref in xcom(run, "transform")["datasets"].values()]
        assert staged and all(uri.startswith(s3_staging.root + "/daily_user_engagement/") for uri in staged)
        assert xcom(run, "load")["metrics"]["rows_loaded"] == reference_env.users_active_on(date(2026, 11, 9))
        assert {row[1] for row in reference_env.warehouse_rows()} == {"2026-11-09"}
        # the run succeeded: retention removes what it staged, in the background
        wait_until(lambda: s3_staging.object_keys() == [], 30, "the run's staged data to be removed")
        assert claude_conn.messages_requests == []


def _quarantined_values(sample: Sample) -> list[tuple[Any, ...]]:
    """The quarantine table's rows without the run columns (a re-run upserts them with its own run and time)."""
    from airflow_agent_provider.engines.quarantine_table import RUN_COLUMNS

    rows = sample.warehouse_rows("SELECT * FROM events_quarantine ORDER BY event_id")
    return [row[: -len(RUN_COLUMNS)] for row in rows]
