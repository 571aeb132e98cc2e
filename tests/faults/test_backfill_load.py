"""Load: a 30-day backfill of the reference DAG, eight runs at a time, on the CeleryExecutor topology.

The topology (``_topology.py``) is the one of ``tests/process/test_celery_topology.py``: api-server,
scheduler, dag-processor and a real ``airflow celery worker`` (concurrency 2) on loopback PostgreSQL
(metadata and warehouse) and Redis. The backfill is created over REST with ``max_active_runs`` 8.
It must end with 30 successful runs, never more than 8 running at once, and a warehouse that is
exactly what the sample sources say: per date, one row per user with events that day, with that
user's event and purchase counts and revenue.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.faults._support import query
from tests.faults._topology import BACKFILL_DAYS, FaultsAirflow
from tests.process._airflow import REFERENCE_DAG
from tests.process._procs import wait_until

MAX_ACTIVE_RUNS = 8
BACKFILL_TIMEOUT_S = 2400

EXPECTED_SQL = """
SELECT user_id, substr(event_ts, 1, 10), count(*), sum(event_type = 'purchase'), round(sum(coalesce(revenue, 0)), 2)
FROM events
WHERE user_id IS NOT NULL AND substr(event_ts, 1, 10) BETWEEN ? AND ?
GROUP BY 1, 2
"""
LOADED_SQL = "SELECT user_id, CAST(date AS TEXT), events, purchases, revenue FROM user_engagement_daily"


def expected_rows(airflow: FaultsAirflow) -> dict[tuple[int, str], tuple[int, int, float]]:
    """(user_id, date) -> (events, purchases, revenue), straight from the sample events database."""
    with sqlite3.connect(airflow.work / "sample" / "events.db") as con:
        rows = con.execute(EXPECTED_SQL, (airflow.days[0], airflow.days[-1])).fetchall()
    return {(int(r[0]), str(r[1])): (int(r[2]), int(r[3]), float(r[4])) for r in rows}


def loaded_rows(airflow: FaultsAirflow) -> dict[tuple[int, str], tuple[int, int, float]]:
    engine = airflow.warehouse()
    try:
        rows = query(engine, LOADED_SQL)
    finally:
        engine.dispose()
    assert len({(r[0], r[1]) for r in rows}) == len(rows), "a (user_id, date) key was loaded twice"
    return {(int(r[0]), str(r[1])): (int(r[2]), int(r[3]), float(r[4])) for r in rows}


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The largest number of runs whose [start, end] intervals overlap."""
    edges = []
    for run in runs:
        edges += [(datetime.fromisoformat(run["start_date"]), 1), (datetime.fromisoformat(run["end_date"]), -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(BACKFILL_TIMEOUT_S + 600)
class TestThirtyDayBackfill:
    def test_thirty_successful_runs_eight_at_a_time_and_an_exact_warehouse(self, faults_airflow: FaultsAirflow) -> None:
        api, days = faults_airflow.api, faults_airflow.days
        api.unpause(REFERENCE_DAG)
        started = time.monotonic()
        window = {"from_date": f"{days[0]}T00:00:00Z", "to_date": f"{days[-1]}T00:00:00Z"}
        backfill = api.call("POST", "/backfills", json={"dag_id": REFERENCE_DAG, **window, "max_active_runs": 8})

        def completed() -> Any:
            current = next(b for b in api.backfills(REFERENCE_DAG) if b["id"] == backfill["id"])
            return current if current["completed_at"] else None

        wait_until(completed, BACKFILL_TIMEOUT_S, "the 30-day backfill to complete", interval=5)
        took = time.monotonic() - started
        runs = api.runs(REFERENCE_DAG, "backfill")
        expected, loaded = expected_rows(faults_airflow), loaded_rows(faults_airflow)
        print(
            f"\n{BACKFILL_DAYS}-day backfill, max_active_runs {MAX_ACTIVE_RUNS}, Celery concurrency 2: {took:.0f}s, "
            f"at most {most_at_once(runs)} runs at once, {len(loaded)} rows loaded ({len(expected)} expected)"
        )
        assert sorted(r["logical_date"][:10] for r in runs) == days
        assert Counter(r["state"] for r in runs) == {"success": BACKFILL_DAYS}
        assert 1 < most_at_once(runs) <= MAX_ACTIVE_RUNS
        per_date = Counter(day for _, day in expected)
        assert Counter(day for _, day in loaded) == per_date and set(per_date) == set(days)
        assert loaded.keys() == expected.keys()
        for key, (events, purchases, revenue) in expected.items():
            got = loaded[key]
            assert got[:2] == (events, purchases) and abs(got[2] - revenue) < 0.011, (key, got, expected[key])
