"""Staging retention: a run's staged data is removed when the run succeeds, kept when it fails.

Airflow calls ``on_dag_run_success`` wherever a run's state becomes success: in the scheduler,
in the API server when a user marks a run successful, and in the process of ``dag.test()``. That
is the one place that sees every run end, with or without a report task, and it runs once per run
rather than once per task. The run's folders are found from the datasets its tasks returned
(every stage result names its datasets' URIs) and the configured staging root, so roots that a
task overrode are cleaned as well. Removal problems are logged, never raised: a listener must not
break the scheduler, and staged data is scratch.

``[agent_provider] staging_retention``: ``delete_on_success`` (default) or ``keep`` (nothing is
removed; clean up by other means). A failed run's data is always kept, for debugging, and so is
that of a run that succeeded although one of its tasks failed (a report task with
``trigger_rule="all_done"`` can make such a run succeed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)


@hookimpl
def on_dag_run_success(dag_run: DagRun, msg: str) -> None:
    """Remove the run's staged data unless ``staging_retention`` says keep."""
    try:
        _apply_retention(dag_run)
    except Exception:  # a listener must never break the scheduler
        log.exception("staging retention: could not clean up run %s of %s", dag_run.run_id, dag_run.dag_id)


@hookimpl
def on_dag_run_failed(dag_run: DagRun, msg: str) -> None:
    """A failed run keeps its staged data for debugging; say where it is."""
    log.info("staging retention: run %s of %s failed; its staged data is kept", dag_run.run_id, dag_run.dag_id)


def _apply_retention(dag_run: DagRun) -> None:
    from airflow_agent_provider.engines.staging import retention as staging_retention
    from airflow_agent_provider.operators import _common

    policy = staging_retention.parse_retention(_common.configured_staging_retention())
    if policy == "keep":
        return
    failed = _failed_tasks(dag_run)
    if failed:  # e.g. a report task with trigger_rule all_done made the run succeed after a stage failed
        log.info("staging retention: run %s succeeded but %s failed; its staged data is kept", dag_run.run_id, failed)
        return
    folders = staging_retention.run_folders(
        dag_run.dag_id,
        dag_run.run_id,
        roots=[_common.configured_staging_root()],
        uris=list(_dataset_uris(dag_run)),
    )
    for folder in folders:
        try:
            removed = staging_retention.remove(folder)
        except Exception as err:  # one unreachable root must not keep the others
            log.warning("staging retention: could not remove %s: %s", folder, err)
            continue
        if removed:
            log.info("staging retention: removed %s (run %s succeeded)", folder, dag_run.run_id)


def _failed_tasks(dag_run: DagRun) -> list[str]:
    from airflow.utils.state import TaskInstanceState

    failed = (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)
    return sorted(ti.task_id for ti in dag_run.get_task_instances() if ti.state in failed)


def _dataset_uris(dag_run: DagRun) -> Iterator[str]:
    """The URIs of every dataset the run's tasks returned in their stage results."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key="return_value")
        ).all()
        values = [XComModel.deserialize_value(row) for row in rows]
    for value in values:
        yield from _uris_of(value)


def _uris_of(value: Any) -> Iterator[str]:
    datasets = value.get("datasets") if isinstance(value, Mapping) else None
    if not isinstance(datasets, Mapping):
        return
    for ref in datasets.values():
        uri = ref.get("uri") if isinstance(ref, Mapping) else None
        if isinstance(uri, str):
            yield uri
