"""Test environment: an isolated Airflow home (SQLite), a temp staging root, and real databases.

Environment variables are set here, before anything imports Airflow, so every test process sees
the same isolated configuration. PostgreSQL tests never skip: `make test` starts the server.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_DAGS = ROOT / "tests" / "dags"
_HOME = Path(tempfile.mkdtemp(prefix="aap-airflow-home-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AGENT_PROVIDER_STAGING_ROOT": str(_HOME / "staging"),
        "AGENT_PROVIDER_TEST_ROOT": str(_HOME),
    }
)
for _key in [k for k in os.environ if k.startswith(("ANTHROPIC_", "AWS_"))]:
    del os.environ[_key]  # no real key anywhere; object-store credentials come from connections only

from tests.objectstore import moto_s3, s3_staging  # noqa: E402, F401  (fixtures, imported after the environment is set)

PG_ADMIN_DSN = os.environ.get("AGENT_PROVIDER_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the isolated AIRFLOW_HOME (for DAG runs)."""
    from airflow.utils import db

    db.initdb()
    return _HOME


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session on 127.0.0.1:5432, dropped afterwards."""
    import psycopg2

    name = f"aap_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as err:  # never a silent skip: make test starts the server
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({err}); run `make services`")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, emptied of tables after each test."""
    yield pg_server_url
    import sqlalchemy as sa

    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture
def staging_root(tmp_path: Path) -> str:
    root = tmp_path / "staging"
    root.mkdir()
    return str(root)
