"""Staging retention: a run's staged data is removed when the run succeeds, kept when it fails.

Airflow calls ``on_dag_run_success`` wherever a run's state becomes success: in the scheduler,
in the API server when a user marks a run successful, and in the process of ``dag.test()``. That
is the one place that sees every run end, with or without a report task, and it runs once per run
rather than once per task. The run's folders are found from the datasets its tasks returned
(every stage result names its datasets' URIs) and the configured staging root, so roots that a
task overrode are cleaned as well. Warehouse-native staging tables (``postgres://...`` URIs) are
dropped likewise: every table of the run in each schema its datasets were staged in.

In the scheduler the listener runs inside the scheduling loop's transaction, which must not be
committed (Airflow guards it: "UNEXPECTED COMMIT - THIS WILL BREAK HA LOCKS!") and must not wait
on the network. So the listener only reads, through the session the run is attached to, and
decides; the removal itself runs in a daemon thread, and any problem is logged, never raised.

``[agent_provider] staging_retention``: ``delete_on_success`` (default) or ``keep`` (nothing is
removed; clean up by other means). A failed run's data is always kept, for debugging, and so is
that of a run that succeeded although one of its tasks failed (a report task with
``trigger_rule="all_done"`` can make such a run succeed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


@hookimpl
def on_dag_run_success(dag_run: DagRun, msg: str) -> None:
    """Remove the run's staged data, in the background, unless ``staging_retention`` says keep."""
    dag_id, run_id = dag_run.dag_id, dag_run.run_id  # read first: nothing below may touch the run after an error
    try:
        folders = folders_to_remove(dag_run, dag_id, run_id)
    except Exception:  # a listener must never break the scheduler
        log.exception("staging retention: could not decide for run %s of %s; its staged data is kept", run_id, dag_id)
        return
    if folders:
        threading.Thread(target=remove_folders, args=(folders, run_id), name="staging-retention", daemon=True).start()


@hookimpl
def on_dag_run_failed(dag_run: DagRun, msg: str) -> None:
    """A failed run keeps its staged data for debugging."""
    log.info("staging retention: run %s of %s failed; its staged data is kept", dag_run.run_id, dag_run.dag_id)


def folders_to_remove(dag_run: DagRun, dag_id: str, run_id: str) -> list[str]:
    """The run's staged folders, or none when the policy keeps them or a task of the run failed."""
    from airflow_agent_provider import settings
    from airflow_agent_provider.engines.staging import retention

    if retention.parse_retention(settings.staging_retention()) == "keep":
        return []
    session = _session_of(dag_run)
    failed = _failed_tasks(dag_run, session)
    if failed:
        log.info("staging retention: run %s succeeded but %s failed; its staged data is kept", run_id, failed)
        return []
    uris = list(_dataset_uris(session, dag_id, run_id))
    return retention.run_folders(dag_id, run_id, roots=[settings.staging_root()], uris=uris)


def remove_folders(folders: Sequence[str], run_id: str) -> None:
    """Remove each folder; one that cannot be removed does not keep the others.

    An object-store folder is opened through its Airflow connection, as the operators open it: in
    the scheduler or the API server no task of the run has opened it in this process.
    """
    from airflow_agent_provider.engines import warehouse_staging
    from airflow_agent_provider.engines.staging import area, retention
    from airflow_agent_provider.operators import _common, _staging

    area.set_opener(_staging.opener)
    warehouse_staging.set_connector(_common.sql_engine)  # warehouse staging tables: dropped through their connection

    for folder in folders:
        try:
            removed = retention.remove(folder)
        except Exception as err:  # a root that is unreachable now: log it, keep going
            log.warning("staging retention: could not remove %s: %s", folder, err)
            continue
        if removed:
            log.info("staging retention: removed %s (run %s succeeded)", folder, run_id)


def _session_of(dag_run: DagRun) -> Session:
    """The session the run is attached to: reads only, the caller owns its transaction."""
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:  # a detached run: this thread's session, read from, never committed
        from airflow import settings

        if settings.Session is None:
            raise RuntimeError("Airflow's metadata DB is not configured in this process")
        session = settings.Session()
    return session


def _failed_tasks(dag_run: DagRun, session: Session) -> list[str]:
    from airflow.utils.state import TaskInstanceState

    failed = (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)
    return sorted(ti.task_id for ti in dag_run.get_task_instances(session=session) if ti.state in failed)


def _dataset_uris(session: Session, dag_id: str, run_id: str) -> Iterator[str]:
    """The URIs of every dataset the run's tasks returned in their stage results."""
    from airflow.models.xcom import XComModel

    rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all()
    for row in rows:
        yield from _uris_of(XComModel.deserialize_value(row))


def _uris_of(value: Any) -> Iterator[str]:
    datasets = value.get("datasets") if isinstance(value, Mapping) else None
    if not isinstance(datasets, Mapping):
        return
    for ref in datasets.values():
        uri = ref.get("uri") if isinstance(ref, Mapping) else None
        if isinstance(uri, str):
            yield uri
