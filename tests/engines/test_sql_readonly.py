"""SQL sources are opened read-only: real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_agent_provider.engines.sources.sql_readonly import SourceDatabaseMissing, read_only_engine


def test_a_missing_sqlite_file_is_an_error_naming_it_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"

    with pytest.raises(SourceDatabaseMissing, match=f"SQLite database file {missing} does not exist"):
        read_only_engine(sa.create_engine(f"sqlite:///{missing}"))

    assert not missing.exists()


def test_a_sqlite_source_reads_but_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE flights (id INTEGER)")
        con.execute("INSERT INTO flights VALUES (1), (2)")
    con.close()
    engine = read_only_engine(sa.create_engine(f"sqlite:///{path}"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM flights").scalar() == 2
            with pytest.raises(sa.exc.OperationalError, match="readonly database"):
                conn.exec_driver_sql("DELETE FROM flights")
    finally:
        engine.dispose()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM flights").fetchone() == (2,)
    con.close()


def test_a_postgres_source_runs_read_only_transactions(pg_url: str) -> None:
    with sa.create_engine(pg_url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE flights (id integer)")
        conn.exec_driver_sql("INSERT INTO flights VALUES (1), (2)")
    engine = read_only_engine(sa.create_engine(pg_url))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SELECT count(*) FROM flights").scalar() == 2
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.exec_driver_sql("DELETE FROM flights")
    finally:
        engine.dispose()


def test_read_only_sources_still_extract_through_copy_and_rows(pg_url: str, tmp_path: Path) -> None:
    from airflow_agent_provider.contracts import parse_sources
    from airflow_agent_provider.engines.extract import extract_sources

    with sa.create_engine(pg_url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE flights AS SELECT g AS id, g * 1.5 AS delay FROM generate_series(1, 50) g")
    sqlite_path = tmp_path / "source.db"
    with sqlite3.connect(sqlite_path) as con:
        con.execute("CREATE TABLE airlines (carrier TEXT)")
        con.execute("INSERT INTO airlines VALUES ('UA'), ('AA')")
    con.close()
    engines = {
        "pg": read_only_engine(sa.create_engine(pg_url)),
        "lite": read_only_engine(sa.create_engine(f"sqlite:///{sqlite_path}")),
    }
    sources = parse_sources(
        [
            {"name": "flights", "type": "sql", "conn_id": "pg", "query": "SELECT * FROM flights"},
            {"name": "airlines", "type": "sql", "conn_id": "lite", "query": "SELECT * FROM airlines"},
        ]
    )
    try:
        result = extract_sources(
            sources, dataset_uri=lambda name: str(tmp_path / "staging" / name), sql_engine=engines.get
        )
    finally:
        for engine in engines.values():
            engine.dispose()

    assert {name: ref.row_count for name, ref in result.datasets.items()} == {"flights": 50, "airlines": 2}
