"""Warehouse-native staging on the real PostgreSQL: a warehouse with source tables, the connector installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def warehouse(pg_url: str) -> Iterator[object]:
    """The session's PostgreSQL as the staging warehouse ``wh`` (engine), its staging schema dropped after."""
    import sqlalchemy as sa

    from airflow_agent_provider.engines import warehouse_staging as ws

    engine = sa.create_engine(pg_url)
    installed = ws._CONNECTOR.make  # the operators' connector, when they were imported: put back after
    ws.set_connector(lambda conn_id: sa.create_engine(pg_url))
    try:
        yield engine
    finally:
        ws.set_connector(installed)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS agent_staging CASCADE")
        engine.dispose()


@pytest.fixture
def wh_pg(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The session's PostgreSQL as the Airflow connection ``wh_pg`` the test DAGs stage into (engine);
    its staging schema dropped after."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    url = sa.engine.make_url(pg_url)
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG", f"postgresql://postgres@{url.host}:{url.port}/{url.database}")
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS agent_staging CASCADE")
        engine.dispose()
