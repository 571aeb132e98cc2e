"""What every operator shares: run scope, staging URIs, data interval, upstream results, connections.

Kept light: Airflow's SDK is already loaded when an operator runs; heavy libraries are not imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_agent_provider import settings
from airflow_agent_provider.contracts import DatasetRef, StageResult, Usage, parse_upstream
from airflow_agent_provider.engines import staging

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class RunScope:
    """Who is running: the ids that scope staged data and records."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def dataset_uri(self, root: str | None, dataset: str) -> str:
        index = self.map_index if self.map_index >= 0 else None
        return staging.stage_uri(
            root or settings.staging_root(), self.dag_id, self.run_id, self.task_id, dataset, map_index=index
        )

    def uri_factory(self, root: str | None) -> Callable[[str], str]:
        return lambda dataset: self.dataset_uri(root, dataset)


def run_scope(context: Mapping[str, Any]) -> RunScope:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return RunScope(
        dag_id=ti.dag_id,
        run_id=context["run_id"],
        task_id=ti.task_id,
        map_index=-1 if map_index is None else int(map_index),
    )


def data_interval(context: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The run's data interval; manual runs without a logical date use the day before ``run_after``."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None:
        return _utc(start), _utc(end)
    run_after = _utc(context["dag_run"].run_after)
    day_end = run_after.replace(hour=0, minute=0, second=0, microsecond=0)
    return day_end - timedelta(days=1), day_end


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def upstream_results(value: Any) -> list[StageResult]:
    """The stage results passed as ``upstream=task.output`` (one or a list); skipped ones dropped."""
    return parse_upstream(value)


def find_dataset(results: Sequence[StageResult], name: str | None) -> tuple[str, DatasetRef]:
    """The dataset called ``name`` among the upstream results (the only one when ``name`` is None)."""
    found = {n: ref for r in results for n, ref in r.datasets.items()}
    if name is None:
        if len(found) != 1:
            raise ValueError(f"upstream holds datasets {sorted(found) or 'none'}; set dataset= to pick one")
        return next(iter(found.items()))
    if name not in found:
        raise ValueError(f"no upstream dataset named {name!r}; upstream holds {sorted(found) or 'none'}")
    return name, found[name]


def all_datasets(results: Sequence[StageResult]) -> dict[str, DatasetRef]:
    """Every dataset of the upstream results by name; later results win on a name clash."""
    return {n: ref for r in results for n, ref in r.datasets.items()}


def sql_engine(conn_id: str) -> Engine:
    """A SQLAlchemy engine for an Airflow connection (sqlite, postgres, or any DbApiHook)."""
    from airflow.sdk import BaseHook

    from airflow_agent_provider.engines.load import psycopg2_engine

    hook = BaseHook.get_connection(conn_id).get_hook()
    get_engine = getattr(hook, "get_sqlalchemy_engine", None)
    if get_engine is None:
        raise TypeError(f"connection {conn_id!r} has no SQLAlchemy engine (its hook is {type(hook).__name__})")
    return psycopg2_engine(get_engine())  # PostgreSQL over psycopg2: the COPY fast paths


def load_quarantined(
    conn_id: str, tables: Mapping[str, DatasetRef], key: Sequence[str] | None = None
) -> dict[str, int]:
    """Write quarantined rows to their tables through ``conn_id``, upserted by ``key`` else inserted; rows per table."""
    from airflow_agent_provider.engines.load import load_dataset

    engine = sql_engine(conn_id)
    try:
        for table, ref in tables.items():
            load_dataset(
                ref, engine=engine, target_table=table, load_strategy="upsert" if key else "insert", upsert_key=key
            )
    finally:
        engine.dispose()
    return {table: ref.row_count for table, ref in tables.items()}


def usage_so_far(context: Mapping[str, Any]) -> Usage:
    """Model usage already spent in this run, summed from every task's stage result and decision."""
    ti, dag = context["ti"], context.get("dag")
    task_ids = [t for t in getattr(dag, "task_ids", []) if t != ti.task_id]
    total = Usage()
    for key in ("return_value", "decision"):
        values = ti.xcom_pull(task_ids=task_ids, key=key) if task_ids else []
        for value in values or []:
            total = total + _usage_of(value)
    return total


def _usage_of(value: Any) -> Usage:
    if not isinstance(value, Mapping):
        return Usage()
    usage = value.get("usage")
    if isinstance(usage, Mapping):
        fields = {k: v for k, v in usage.items() if k in Usage.model_fields}
        try:
            return Usage.model_validate(fields)
        except ValueError:
            return Usage()
    return Usage()


def progress_logger(log: Any, label: str) -> Callable[[str], None]:
    """A ``log(message)`` callable for the engines that writes one line to the task log."""
    return lambda message: log.info("%s: %s", label, message)
