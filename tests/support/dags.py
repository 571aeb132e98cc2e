"""Running a DAG of ``tests/dags`` with ``dag.test()`` and reading what its tasks did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEST_DAGS = Path(__file__).resolve().parent.parent / "dags"


def run_dag(dag_id: str, logical_date: Any = "2026-11-10", conf: dict[str, Any] | None = None) -> Any:
    """Run a DAG from tests/dags with ``dag.test()`` and return the DagRun."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(TEST_DAGS))
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not found in tests/dags: {bag.import_errors}"
    when = pendulum.parse(logical_date).in_tz("UTC") if isinstance(logical_date, str) else logical_date
    return dag.test(logical_date=when, run_conf=conf)


def xcom(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """The value a task pushed in a finished run (``None`` when nothing was pushed)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        ).all()
        rows = [r for r in rows if map_index is None or r.map_index == map_index]
        return XComModel.deserialize_value(rows[0]) if rows else None


def task_states(dag_run: Any) -> dict[str, Any]:
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
        for ti in dag_run.get_task_instances()
    }
