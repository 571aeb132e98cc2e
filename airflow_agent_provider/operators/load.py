"""LoadOperator: write a staged dataset to a warehouse table in one transaction."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow_agent_provider.operators.base import StageOperator
from airflow_agent_provider.operators.errors import stage_errors

if TYPE_CHECKING:
    from airflow.sdk import Context


class LoadOperator(StageOperator):
    """Load one staged dataset into ``target_table`` through a SQL connection, then check the load.

    Runs in one transaction: a failure leaves the table as it was. Re-running the same data interval
    with ``upsert`` (or ``replace``) gives the same table. Returns the ``load`` stage result with
    ``rows_loaded``, ``load_duration_seconds``, ``snapshot_created`` and ``load_validation``
    (``row_count_match``, ``schema_match``, ``no_duplicates``).

    Columns of an existing target that the staged data no longer has (a column removed from the
    transform) are left alone, never dropped: they are listed in ``columns_not_written`` and a
    warning in the result and the task log says what happened to them (an upsert keeps their old
    values in updated rows; new rows get NULL). ``schema_match`` checks only the columns written.

    :param upstream: the upstream stage result(s), e.g. ``transform.output``. Templated.
    :param conn_id: the warehouse connection (any SQLAlchemy-capable hook: sqlite, postgres, ...). With
        warehouse-native staging (``ExtractOperator(staging_conn_id=...)``) it must reach the staging
        tables' database: the rows then move inside it (``INSERT ... SELECT``). Templated.
    :param target_table: the table to write, ``table`` or ``schema.table``; created when missing. Templated.
    :param dataset: the dataset to load; may be omitted when the upstream holds only one. Templated.
    :param load_strategy: ``insert`` (append), ``upsert`` (update or insert by ``upsert_key``) or
        ``replace`` (the table's rows are replaced).
    :param upsert_key: the key column(s) for ``upsert``. Templated.
    :param create_snapshot_before_load: copy the table first to ``<table>__snap_<run>``; the name is
        fixed per run, so a retry of the same run reuses it.
    :param batch_rows: rows written per batch.
    """

    template_fields: Sequence[str] = ("upstream", "dataset", "conn_id", "target_table", "upsert_key")
    ui_color = "#e8daef"
    stage = "load"

    def __init__(
        self,
        *,
        upstream: Any,
        conn_id: str,
        target_table: str,
        dataset: str | None = None,
        load_strategy: Literal["insert", "upsert", "replace"] = "insert",
        upsert_key: str | list[str] | None = None,
        create_snapshot_before_load: bool = False,
        batch_rows: int = 50_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.upstream = upstream
        self.conn_id = conn_id
        self.target_table = target_table
        self.dataset = dataset
        self.load_strategy = load_strategy
        self.upsert_key = upsert_key
        self.create_snapshot_before_load = create_snapshot_before_load
        self.batch_rows = batch_rows

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_agent_provider.contracts import parse_upstream
        from airflow_agent_provider.engines.load import load_dataset
        from airflow_agent_provider.operators import _common
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        with stage_errors(self.task_id):
            name, holder = _common.find_dataset(parse_upstream(self.upstream), self.dataset)
            ref = holder.datasets[name]
            engine = _common.sql_engine(self.conn_id)
            try:
                result = load_dataset(
                    ref,
                    engine=engine,
                    target_table=self.target_table,
                    load_strategy=self.load_strategy,
                    upsert_key=self.upsert_key,
                    create_snapshot_before_load=self.create_snapshot_before_load,
                    snapshot_name=snapshot_name(self.target_table, context["run_id"]),
                    batch_rows=self.batch_rows,
                    log=_common.progress_logger(self.log, self.task_id),
                )
            finally:
                engine.dispose()
        result.task_id = self.task_id
        for warning in result.warnings:
            self.log.warning("%s", warning)
        self.log.info(
            "Loaded %s row(s) of %s into %s (%s)",
            result.metrics.get("rows_loaded"),
            name,
            self.target_table,
            self.load_strategy,
        )
        return self.keep_for_lineage(context, result.model_dump(mode="json"))


def snapshot_name(target_table: str, run_id: str) -> str:
    """``<table>__snap_<run>``: deterministic per run (a retry reuses it), at most 63 characters.

    A long name keeps its start and ends in a digest of the full name, so two runs never share one.
    """
    from airflow_agent_provider.contracts.identifiers import MAX_IDENTIFIER

    table = target_table.rsplit(".", 1)[-1]
    run = re.sub(r"[^a-z0-9]+", "_", run_id.lower()).strip("_") or "run"
    name = f"{table}__snap_{run}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - 9]}_{digest}"
