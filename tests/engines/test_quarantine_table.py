"""The quarantine table takes any row: real staged rows, real SQLite and PostgreSQL tables."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.quarantine_table import (
    QuarantineRun,
    migrate_quarantine_table,
    quarantine_table_rows,
)

DAY_1 = datetime(2026, 11, 9, tzinfo=timezone.utc)
DAY_2 = datetime(2026, 11, 10, tzinfo=timezone.utc)


def stage(root: str, name: str, frame: pd.DataFrame) -> DatasetRef:
    writer = staging.DatasetWriter(f"{root}/{name}")
    writer.write(frame)
    return writer.finish()


def run_of(day: datetime) -> QuarantineRun:
    return QuarantineRun(
        dag_id="flights",
        run_id=f"scheduled__{day.date()}",
        task_id="quarantine",
        logical_date=day,
        data_interval=(day, day.replace(day=day.day + 1)),
    )


def quarantine_into(url: str, root: str, frame: pd.DataFrame, day: datetime, key: list[str] | None = None) -> None:
    """What ``load_quarantined`` does: the rows in the table's shape, the table migrated, then loaded."""
    quarantined = stage(root, f"q_{day:%d}", frame)
    rows = quarantine_table_rows(quarantined, run_of(day), output_uri=f"{root}/rows_{day:%d}", at=day)
    engine = sa.create_engine(url)
    try:
        migrate_quarantine_table(engine, "flights_quarantine")
        load_dataset(
            rows, engine=engine, target_table="flights_quarantine", load_strategy="upsert" if key else "insert",
            upsert_key=key,
        )  # fmt: skip
    finally:
        engine.dispose()


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(row) for row in con.exec_driver_sql(sql).fetchall()]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


class TestQuarantineTable:
    def test_a_later_day_of_strings_goes_into_a_table_first_made_from_numbers(self, url: str, staging_root: str):
        numbers = pd.DataFrame({"flight": [1, 2], "dep_delay": [-5.5, 900.0], "quarantine_rule": ["dep_delay lt"] * 2})
        strings = pd.DataFrame(
            {"flight": [3], "dep_delay": ["late"], "gate": ["B7"], "quarantine_rule": ["dep_delay not_castable"]}
        )

        quarantine_into(url, staging_root, numbers, DAY_1)
        quarantine_into(url, staging_root, strings, DAY_2)

        rows = fetch(
            url,
            "SELECT flight, dep_delay, gate, quarantine_rule, quarantine_dag_id, quarantine_run_id, "
            "quarantine_task_id, quarantine_data_interval FROM flights_quarantine ORDER BY flight",
        )
        assert rows == [
            ("1", "-5.5", None, "dep_delay lt", "flights", "scheduled__2026-11-09", "quarantine",
             "2026-11-09T00:00:00+00:00/2026-11-10T00:00:00+00:00"),
            ("2", "900.0", None, "dep_delay lt", "flights", "scheduled__2026-11-09", "quarantine",
             "2026-11-09T00:00:00+00:00/2026-11-10T00:00:00+00:00"),
            ("3", "late", "B7", "dep_delay not_castable", "flights", "scheduled__2026-11-10", "quarantine",
             "2026-11-10T00:00:00+00:00/2026-11-11T00:00:00+00:00"),
        ]  # fmt: skip
        dates = fetch(url, "SELECT quarantine_logical_date, quarantined_at FROM flights_quarantine ORDER BY flight")
        assert [str(day)[:10] for day, _ in dates] == ["2026-11-09", "2026-11-09", "2026-11-10"]
        assert all(at is not None for _, at in dates)

    def test_an_old_typed_table_is_migrated_keeping_its_rows_and_key(self, url: str, staging_root: str):
        engine = sa.create_engine(url)
        with engine.begin() as con:
            con.exec_driver_sql(
                "CREATE TABLE flights_quarantine (flight INTEGER PRIMARY KEY, dep_delay REAL, carrier TEXT)"
            )
            con.exec_driver_sql("INSERT INTO flights_quarantine VALUES (1, -5.5, 'UA'), (2, 900.0, NULL)")
        engine.dispose()
        later = pd.DataFrame({"flight": ["2", "3"], "dep_delay": ["late", "early"], "carrier": ["AA", "B6"]})

        quarantine_into(url, staging_root, later, DAY_2, key=["flight"])
        quarantine_into(url, staging_root, later, DAY_2, key=["flight"])  # a re-run changes nothing

        rows = fetch(url, "SELECT flight, dep_delay, carrier, quarantine_run_id FROM flights_quarantine ORDER BY 1")
        assert [row[:3] for row in rows] == [("1", "-5.5", "UA"), ("2", "late", "AA"), ("3", "early", "B6")]
        assert [row[3] for row in rows] == [None, "scheduled__2026-11-10", "scheduled__2026-11-10"]

    def test_a_table_of_the_current_shape_is_left_alone(self, sqlite_url: str, staging_root: str):
        quarantine_into(sqlite_url, staging_root, pd.DataFrame({"flight": [1]}), DAY_1)
        engine = sa.create_engine(sqlite_url)
        try:
            assert migrate_quarantine_table(engine, "flights_quarantine") == []
            assert migrate_quarantine_table(engine, "no_such_table") == []
        finally:
            engine.dispose()
