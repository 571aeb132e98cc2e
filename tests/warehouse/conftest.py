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
