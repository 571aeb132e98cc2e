"""Fixtures of the load tests: a warehouse engine per backend and datasets staged from columns."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging
from tests.support.staging import Stage


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A real SQLite file database, then a fresh PostgreSQL database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    eng = sa.create_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def stage(staging_root: str) -> Stage:
    """Stage a dataset from one or more parts (dicts of columns or Arrow tables)."""
    counter = itertools.count()

    def make(*parts: dict[str, Any] | pa.Table) -> DatasetRef:
        writer = staging.DatasetWriter(f"{staging_root}/dataset_{next(counter)}")
        for part in parts:
            writer.write(part if isinstance(part, pa.Table) else pa.table(part))
        return writer.finish()

    return make
