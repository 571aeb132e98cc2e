"""Fixtures of the reliability and security suite.

FakeClaude and a real SDK client on it come from the Claude-layer tests; the warehouses are the
session's real SQLite file and PostgreSQL database; ``faults_dag_run`` runs a DAG of
``tests/faults/dags`` with ``dag.test()`` (that folder is added as a DAG bundle for the call).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.agents.support import claude_conn, client, fake

__all__ = ["claude_conn", "client", "fake"]

FAULT_DAGS = Path(__file__).resolve().parent / "dags"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A real, empty warehouse: a SQLite file, then the session's PostgreSQL database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def bundle_list() -> str:
    """``[dag_processor] dag_bundle_config_list`` with the test DAGs folder and this suite's DAGs."""
    items = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
        {"name": "faults-dags", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(FAULT_DAGS)}},
    ]
    return json.dumps(items)


@pytest.fixture
def faults_dag_run(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run(dag_id, logical_date=..., conf=...)``: a real ``dag.test()`` run of a DAG in tests/faults/dags."""
    import pendulum

    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", bundle_list())

    def run(dag_id: str, logical_date: str = "2026-11-10", conf: dict[str, Any] | None = None) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(FAULT_DAGS))
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found in {FAULT_DAGS}: {bag.import_errors}"
        return dag.test(logical_date=pendulum.parse(logical_date).in_tz("UTC"), run_conf=conf)

    return run


@pytest.fixture(scope="package")
def faults_airflow() -> Iterator[Any]:
    """The Celery topology of the slow tests (``_topology.py``), started once for this package."""
    from tests.faults._topology import celery_airflow

    with celery_airflow() as airflow:
        yield airflow


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run this package's tests on the shared topology last in the package, one after the other, so
    the topology starts once and is stopped before the next package's tests begin."""
    here = Path(__file__).resolve().parent
    ours = [item for item in items if here in Path(str(item.path)).resolve().parents]
    late = [item for item in ours if "faults_airflow" in getattr(item, "fixturenames", ())]
    if not late or len(late) == len(ours):
        return
    anchor = [item for item in ours if item not in late][-1]
    reordered: list[pytest.Item] = []
    for item in items:
        if item in late:
            continue
        reordered.append(item)
        if item is anchor:
            reordered.extend(late)
    items[:] = reordered
