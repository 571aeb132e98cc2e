"""Lineage of the reference DAG: real runs with the OpenLineage listener, every event checked against the spec.

Each test runs ``airflow dags test daily_user_engagement`` in its own process with the provider's
listener and a file transport, then reads what a catalog would receive.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.testing import FakeClaude, Reply
from tests.agents.support import claude_conn, fake
from tests.lineage.runner import dags_test, task_event
from tests.lineage.spec import event_errors
from tests.operators.test_reference_dag import DIAGNOSIS, QUARANTINE_ROUTE, Sample, reference_env, sample

__all__ = ["claude_conn", "fake", "reference_env", "sample"]

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "daily_user_engagement"
EVENTS_COLUMNS = ["event_id", "user_id", "event_type", "event_ts", "revenue", "session_id", "campaign_id"]
RULES = ["unique(event_id)", "not_null(user_id)", "in_list(event_type)", "range(revenue)", "regex(event_ts)"]


def _ids(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def _fields(dataset: dict[str, Any]) -> list[str]:
    return [field["name"] for field in dataset["facets"]["schema"]["fields"]]


def _reads(output: dict[str, Any], column: str) -> set[tuple[str, str, str]]:
    fields = output["facets"]["columnLineage"]["fields"][column]["inputFields"]
    return {(f["namespace"], f["name"], f["field"]) for f in fields}


def _spec_errors(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    found = {f"{e['job']['name']} {e['eventType']}": event_errors(e) for e in events}
    return {where: problems for where, problems in found.items() if problems}


class Names:
    """The dataset names the reference DAG's sources and warehouse get in one test."""

    def __init__(self, sample: Sample) -> None:
        self.events = (f"sqlite://{sample.events_db('fixed')}", "events")
        self.users = (f"http://127.0.0.1:{sample.port}", "/users")
        self.campaigns = ("file", str(sample.root / "fixed" / "campaigns.csv"))
        self.warehouse = f"sqlite://{sample.warehouse}"


class TestReferenceDagLineage:
    def test_a_healthy_day_names_every_source_check_column_and_table(
        self, reference_env: Sample, claude_conn: FakeClaude, tmp_path: Path
    ) -> None:
        sample, names = reference_env, Names(reference_env)
        events = dags_test("healthy_day", DAG_ID, "2026-11-10", tmp_path)

        assert _spec_errors(events) == {}
        extract = task_event(events, "extract_events", "COMPLETE")
        assert _ids(extract["inputs"]) == [names.events] and extract["outputs"] == []
        assert _fields(extract["inputs"][0]) == EVENTS_COLUMNS
        assert _ids(task_event(events, "extract_events", "START")["inputs"]) == [names.events]
        assert _ids(task_event(events, "extract_users", "COMPLETE")["inputs"]) == [names.users]
        assert _ids(task_event(events, "extract_campaigns", "COMPLETE")["inputs"]) == [names.campaigns]

        [checked] = task_event(events, "validate_events", "COMPLETE")["inputs"]
        assert (checked["namespace"], checked["name"]) == names.events
        assertions = checked["inputFacets"]["dataQualityAssertions"]["assertions"]
        assert [a.get("name", a["assertion"]) for a in assertions] == [
            *RULES,
            "event_ts_within_interval",
            "schema_match",
        ]
        assert all(a["success"] for a in assertions)
        metrics = checked["inputFacets"]["dataQualityMetrics"]
        day = "event_ts >= '2026-11-09' AND event_ts < '2026-11-10'"
        with sqlite3.connect(sample.events_db("fixed")) as con:
            rows, revenue_nulls, campaign_nulls = con.execute(
                f"SELECT count(*), count(*) - count(revenue), count(*) - count(campaign_id) FROM events WHERE {day}"
            ).fetchone()
        assert metrics["rowCount"] == rows > 0
        assert metrics["columnMetrics"]["revenue"]["nullCount"] == revenue_nulls
        assert metrics["columnMetrics"]["campaign_id"]["nullCount"] == campaign_nulls
        assert metrics["columnMetrics"]["user_id"]["nullCount"] == 0

        route = task_event(events, "route", "COMPLETE")["run"]["facets"]["agentRouteDecision"]
        assert (route["route"], route["decidedBy"], route["confidence"], route["usage"]["modelCalls"]) == (
            "transform", "rule", 1.0, 0,
        )  # fmt: skip

        transform = task_event(events, "transform", "COMPLETE")
        assert _ids(transform["inputs"]) == [names.events, names.users, names.campaigns]
        [staged] = transform["outputs"]
        assert staged["namespace"] == "file"
        assert staged["name"].endswith(f"/staging/{DAG_ID}/transform/user_engagement_daily")
        assert _reads(staged, "revenue") == {(*names.events, "revenue")}
        assert _reads(staged, "country") == {(*names.users, "country")}
        assert _reads(staged, "date") == {(*names.events, "event_ts")}
        assert _reads(staged, "user_id") == {(*names.events, "user_id")}
        loaded = sample.warehouse_rows("SELECT count(*) FROM user_engagement_daily")[0][0]
        assert staged["outputFacets"]["outputStatistics"]["rowCount"] == loaded

        load = task_event(events, "load", "COMPLETE")
        assert _ids(load["inputs"]) == [(staged["namespace"], staged["name"])]
        [table] = load["outputs"]
        assert (table["namespace"], table["name"]) == (names.warehouse, "user_engagement_daily")
        assert _fields(table) == [c[1] for c in sqlite3.connect(sample.warehouse).execute(
            "PRAGMA table_info(user_engagement_daily)"
        )]  # fmt: skip
        assert table["outputFacets"]["outputStatistics"]["rowCount"] == loaded
        assert _reads(table, "revenue") == {(staged["namespace"], staged["name"], "revenue")}

    def test_a_bad_day_records_the_failed_checks_claudes_route_and_the_quarantine_table(
        self, reference_env: Sample, claude_conn: FakeClaude, tmp_path: Path
    ) -> None:
        names = Names(reference_env)
        claude_conn.add(Reply.json(DIAGNOSIS), match={"schema_title": "Diagnosis"})
        claude_conn.add(Reply.json(QUARANTINE_ROUTE), match={"schema_title": "RouteDecision"})
        events = dags_test("bad_day", DAG_ID, date(2026, 11, 13).isoformat(), tmp_path)

        assert _spec_errors(events) == {}
        [checked] = task_event(events, "validate_events", "COMPLETE")["inputs"]
        outcome = {a.get("name"): a["success"] for a in checked["inputFacets"]["dataQualityAssertions"]["assertions"]}
        assert {name for name, success in outcome.items() if not success} == {
            "not_null(user_id)", "in_list(event_type)", "range(revenue)",
        }  # fmt: skip
        assert checked["inputFacets"]["dataQualityMetrics"]["columnMetrics"]["user_id"]["nullCount"] > 0

        route = task_event(events, "route", "COMPLETE")["run"]["facets"]["agentRouteDecision"]
        assert (route["route"], route["decidedBy"], route["model"], route["confidence"]) == (
            "quarantine", "claude", "claude-sonnet-4-6", 0.9,
        )  # fmt: skip
        assert route["rationale"] == QUARANTINE_ROUTE["rationale"]
        assert route["usage"]["modelCalls"] == 1 and route["usage"]["inputTokens"] > 0
        assert route["usage"]["costUsd"] > 0

        quarantine = task_event(events, "quarantine", "COMPLETE")
        assert _ids(quarantine["inputs"]) == [names.events]
        [table] = quarantine["outputs"]
        assert (table["namespace"], table["name"]) == (names.warehouse, "events_quarantine")
        quarantined = reference_env.warehouse_rows("SELECT count(*) FROM events_quarantine")[0][0]
        assert table["outputFacets"]["outputStatistics"]["rowCount"] == quarantined > 0
        # the quarantined rows are still the extracted events: the transform reads them under their source's name
        assert names.events in _ids(task_event(events, "transform", "COMPLETE")["inputs"])
