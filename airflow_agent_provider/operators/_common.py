"""What every operator shares: run scope, staging URIs, data interval, upstream datasets, connections.

Kept light: Airflow's SDK is already loaded when an operator runs; heavy libraries are not imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_agent_provider import settings
from airflow_agent_provider.contracts import DatasetRef, StageResult
from airflow_agent_provider.engines import staging, warehouse_staging
from airflow_agent_provider.engines.staging import area as staging_area
from airflow_agent_provider.operators import _staging

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from airflow_agent_provider.engines.quarantine_table import QuarantineRun
    from airflow_agent_provider.engines.warehouse_staging import WarehouseStaging

# Remote dataset URIs under no opened root (an upstream task's, read on another worker) are opened
# through their Airflow connection.
staging_area.set_opener(_staging.opener)
# Warehouse staging tables (postgres://<conn_id>/<schema>.<table>) reach their warehouse through the connection.
warehouse_staging.set_connector(lambda conn_id: sql_engine(conn_id))  # noqa: PLW0108  (defined below)


@dataclass(frozen=True)
class RunScope:
    """Who is running: the ids that scope staged data and records."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def dataset_uri(self, root: str | None, dataset: str) -> str:
        """Where this task stages ``dataset``; an object-store root is opened (and checked) first."""
        index = self.map_index if self.map_index >= 0 else None
        root = root or settings.staging_root()
        _staging.ensure_open(root)
        return staging.stage_uri(root, self.dag_id, self.run_id, self.task_id, dataset, map_index=index)

    def uri_factory(self, root: str | None) -> Callable[[str], str]:
        """``dataset -> URI`` under ``root``; the root is opened now, so a bad one fails before any work."""
        _staging.ensure_open(root or settings.staging_root())
        return lambda dataset: self.dataset_uri(root, dataset)


def warehouse_staging_for(scope: RunScope, conn_id: str | None, schema: str | None) -> WarehouseStaging | None:
    """Warehouse-native staging of ``scope``'s datasets in ``conn_id`` (None: staged as Parquet)."""
    if not conn_id:
        return None
    index = scope.map_index if scope.map_index >= 0 else None
    return warehouse_staging.WarehouseStaging(
        conn_id, schema or warehouse_staging.DEFAULT_SCHEMA, scope.dag_id, scope.run_id, scope.task_id, index
    )


def output_uri(scope: RunScope, root: str | None, inputs: Mapping[str, DatasetRef], dataset: str) -> str:
    """Where a stage stages ``dataset``: next to its inputs when they are warehouse staging tables (same
    connection and schema), else under the staging root."""
    for ref in inputs.values():
        if warehouse_staging.is_table_uri(ref.uri):
            table = warehouse_staging.StagedTable.parse(ref.uri)
            found = warehouse_staging_for(scope, table.conn_id, table.schema)
            assert found is not None  # a parsed table URI names its connection
            return found.uri(dataset)
    return scope.dataset_uri(root, dataset)


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


def find_dataset(results: Sequence[StageResult], name: str | None) -> tuple[str, StageResult]:
    """The dataset called ``name`` among the upstream results (the only one when ``name`` is None),
    with the result that holds it."""
    found = all_datasets(results)
    if name is None:
        if len(found) != 1:
            raise ValueError(f"upstream holds datasets {sorted(found) or 'none'}; set dataset= to pick one")
        name = next(iter(found))
    if name not in found:
        raise ValueError(f"no upstream dataset named {name!r}; upstream holds {sorted(found) or 'none'}")
    return name, next(r for r in reversed(results) if name in r.datasets)


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
    conn_id: str,
    tables: Mapping[str, DatasetRef],
    key: Sequence[str] | None = None,
    *,
    context: Mapping[str, Any],
    staging_root: str | None = None,
) -> dict[str, int]:
    """Write quarantined rows to their tables through ``conn_id``, upserted by ``key`` else inserted; rows per table.

    The tables take any row (``engines.quarantine_table``): data columns as text, plus the run, task,
    rule and time of each row; a table of the older typed shape is migrated first, keeping its rows.
    """
    from airflow_agent_provider.engines.load import load_dataset
    from airflow_agent_provider.engines.quarantine_table import migrate_quarantine_table, quarantine_table_rows
    from airflow_agent_provider.engines.sqlsafe import TableName

    run, uri_for = quarantine_run(context), run_scope(context).uri_factory(staging_root)
    engine = sql_engine(conn_id)
    try:
        for table, ref in tables.items():
            rows = quarantine_table_rows(ref, run, output_uri=uri_for(f"{TableName.parse(table).name}__table_rows"))
            migrate_quarantine_table(engine, table)
            load_dataset(
                rows, engine=engine, target_table=table, load_strategy="upsert" if key else "insert", upsert_key=key
            )
    finally:
        engine.dispose()
    return {table: ref.row_count for table, ref in tables.items()}


def quarantine_run(context: Mapping[str, Any]) -> QuarantineRun:
    """The run and task that quarantine rows, for the quarantine table's run columns."""
    from airflow_agent_provider.engines.quarantine_table import QuarantineRun

    scope, logical = run_scope(context), context.get("logical_date")
    return QuarantineRun(
        dag_id=scope.dag_id,
        run_id=scope.run_id,
        task_id=scope.task_id,
        logical_date=_utc(logical) if logical is not None else None,
        data_interval=data_interval(context),
    )


def progress_logger(log: Any, label: str) -> Callable[[str], None]:
    """A ``log(message)`` callable for the engines that writes one line to the task log."""
    return lambda message: log.info("%s: %s", label, message)
