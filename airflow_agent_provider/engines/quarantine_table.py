"""The warehouse table of quarantined rows: any row, as it arrived, with who set it aside, why and when.

Quarantined rows are the ones that did not fit, so the table cannot assume their types: every data
column is text (the value as it arrived, written as DuckDB writes it as ``VARCHAR``), and a later
day's rows whose values are strings where an earlier day's were numbers go in like any others. New
columns are added as text. Each row also says which run and task set it aside and why:

==============================  ==============================================================
column                          holds
==============================  ==============================================================
``quarantine_rule``             the row rule that took the row (``<column> <op>``, e.g.
                                ``dep_delay not_castable``; the keys of ``quarantined_by``)
``quarantine_dag_id``           the DAG of the run
``quarantine_run_id``           the run id
``quarantine_logical_date``     the run's logical date (NULL for a run without one)
``quarantine_data_interval``    the data interval the run processed, ``<start>/<end>`` (ISO 8601)
``quarantine_task_id``          the task that quarantined the row
``quarantined_at``              when (UTC)
==============================  ==============================================================

A table of the older shape (typed data columns, no run columns) is migrated in place, every row
kept: its typed columns become text (``migrate_quarantine_table``, run before each load) and the
run columns are added, NULL for the rows written before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.remediate import QUARANTINE_RULE_COLUMN
from airflow_agent_provider.engines.sqlsafe import TableName, quote, quote_ident, sql_literal

if TYPE_CHECKING:
    import sqlalchemy

    from airflow_agent_provider.engines.warehouse import Warehouse

RUN_COLUMNS = (
    QUARANTINE_RULE_COLUMN,
    "quarantine_dag_id",
    "quarantine_run_id",
    "quarantine_logical_date",
    "quarantine_data_interval",
    "quarantine_task_id",
    "quarantined_at",
)
_TIMESTAMPS = ("quarantine_logical_date", "quarantined_at")


@dataclass(frozen=True)
class QuarantineRun:
    """Who quarantined the rows: the run and task, and the data interval the run processed."""

    dag_id: str
    run_id: str
    task_id: str
    logical_date: datetime | None = None
    data_interval: tuple[datetime, datetime] | None = None


def quarantine_table_rows(
    ref: DatasetRef, run: QuarantineRun, *, output_uri: str, at: datetime | None = None
) -> DatasetRef:
    """Stage the rows of a quarantined dataset in the table's shape: data columns as text, plus the run columns.

    :param ref: the quarantined rows as staged by the quarantine (with their ``quarantine_rule``).
    :param run: who quarantined them.
    :param output_uri: where to stage the rows for the load.
    :param at: when they were quarantined (default: now).
    """
    from airflow_agent_provider.engines.warehouse_staging import is_table_uri

    at = at or datetime.now(timezone.utc)
    if is_table_uri(ref.uri):
        return _warehouse_rows(ref, run, output_uri, at)
    con = staging.connect()
    try:
        scan = staging.scan_sql(ref.uri)
        query = _rows_sql(scan, list(staging.columns_of(con, scan)), run, at)
        return staging.write_query(con, query, output_uri)
    finally:
        con.close()


def _warehouse_rows(ref: DatasetRef, run: QuarantineRun, output_uri: str, at: datetime) -> DatasetRef:
    """The rows of a quarantined staging table in the table's shape, as a staging table next to it
    (``CREATE TABLE ... AS``, named after ``output_uri``'s last segment): the load then moves them
    inside the warehouse with ``INSERT ... SELECT``."""
    from airflow_agent_provider.engines import warehouse_staging as ws
    from airflow_agent_provider.engines.warehouse_sql import WarehouseCursor, sibling_table, stage_query

    table = ws.StagedTable.parse(ref.uri)
    target = sibling_table(ref.uri, output_uri.rstrip("/").rsplit("/", 1)[-1])
    cursor = WarehouseCursor(ws.engine_for(table.conn_id), dialect=table.dialect)
    try:
        types = ws.table_columns(cursor._conn, table)
        return stage_query(cursor, _rows_sql(table.sql, list(types), run, at, text=_duckdb_text(types)), target)
    finally:
        cursor.close()


def _rows_sql(
    scan: str, columns: Sequence[str], run: QuarantineRun, at: datetime, *, text: Mapping[str, str] | None = None
) -> str:
    """DuckDB-dialect SELECT of the quarantine table's shape over the quarantined rows ``scan``.

    :param text: column -> the expression that writes its values as text (default ``CAST(... AS VARCHAR)``).
    """
    text = text or {}
    data = [
        f"{text.get(c) or f'CAST({quote_ident(c)} AS VARCHAR)'} AS {quote_ident(c)}"
        for c in columns
        if c not in RUN_COLUMNS
    ]
    rule = quote_ident(QUARANTINE_RULE_COLUMN) if QUARANTINE_RULE_COLUMN in columns else "NULL"
    interval = "/".join(_iso(moment) for moment in run.data_interval) if run.data_interval else None
    values = {
        QUARANTINE_RULE_COLUMN: f"CAST({rule} AS VARCHAR)",
        "quarantine_dag_id": _text(run.dag_id),
        "quarantine_run_id": _text(run.run_id),
        "quarantine_logical_date": _timestamp(run.logical_date),
        "quarantine_data_interval": _text(interval),
        "quarantine_task_id": _text(run.task_id),
        "quarantined_at": _timestamp(at),
    }
    meta = [f"{value} AS {quote_ident(name)}" for name, value in values.items()]
    return f"SELECT {', '.join([*data, *meta])} FROM {scan}"


def migrate_quarantine_table(engine: sqlalchemy.engine.Engine, table: str) -> list[str]:
    """Make the data columns of an existing quarantine table text, keeping every row; returns the columns changed.

    Nothing happens when the table does not exist or is already of the current shape. PostgreSQL
    changes the column types in place (``ALTER COLUMN ... TYPE text``); SQLite, which cannot, copies the
    rows into a new table of the same name in one transaction (a unique key becomes a unique index).
    """
    from airflow_agent_provider.engines.load import open_warehouse

    wh = open_warehouse(engine)
    try:
        wh.begin()
        name = wh.resolve(TableName.parse(table, "quarantine table"))
        existing = wh.columns(name)
        typed = [
            column
            for column, declared in (existing or {}).items()
            if wh.family(declared) != "string" and column not in RUN_COLUMNS
        ]
        if typed:
            _to_text(wh, name, existing or {}, typed)
        wh.commit()
        return typed
    except Exception:
        wh.rollback()
        raise
    finally:
        wh.close()


def _to_text(wh: Warehouse, name: TableName, existing: dict[str, str], typed: Sequence[str]) -> None:
    if wh.dialect == "postgresql":
        for column in typed:
            wh.execute(f"ALTER TABLE {name.sql} ALTER COLUMN {quote(column)} TYPE text USING {quote(column)}::text")
        return
    keys = wh.unique_keys(name)
    old = name.sibling(f"{name.name}__pre_text")
    wh.execute(f"ALTER TABLE {name.sql} RENAME TO {quote(old.name)}")
    declared = {column: "TEXT" if column in typed else existing[column] for column in existing}
    wh.execute(f"CREATE TABLE {name.sql} ({', '.join(f'{quote(c)} {t}' for c, t in declared.items())})")
    copied = ", ".join(f"CAST({quote(c)} AS TEXT)" if c in typed else quote(c) for c in existing)
    wh.execute(f"INSERT INTO {name.sql} SELECT {copied} FROM {old.sql}")
    wh.execute(f"DROP TABLE {old.sql}")
    spelled = {column.lower(): column for column in existing}
    for index, key in enumerate(keys):
        columns = sorted((spelled[column.lower()] for column in key), key=list(existing).index)
        wh.create_unique_index(name, f"{name.name}__key{index}", columns)


def _duckdb_text(types: Mapping[str, str]) -> dict[str, str]:
    """Float columns written as text the way DuckDB writes them (``2.0``, ``nan``, ``inf``; the warehouse
    writes ``2``, ``NaN``, ``Infinity``), so a quarantined value reads the same from either staging."""
    found = {}
    for column, kind in types.items():
        if kind.upper() not in ("DOUBLE", "FLOAT"):
            continue
        c = quote_ident(column)
        found[column] = (
            f"CASE WHEN isnan({c}) THEN 'nan' WHEN {c} = CAST('inf' AS DOUBLE) THEN 'inf' "
            f"WHEN {c} = CAST('-inf' AS DOUBLE) THEN '-inf' WHEN {c} = 0 AND CAST({c} AS VARCHAR) = '-0' THEN '-0.0' "
            f"WHEN {c} = trunc({c}) AND abs({c}) < 1e16 THEN CAST(CAST({c} AS DECIMAL(38, 0)) AS VARCHAR) || '.0' "
            f"ELSE CAST({c} AS VARCHAR) END"
        )
    return found


def _text(value: str | None) -> str:
    return "CAST(NULL AS VARCHAR)" if value is None else sql_literal(value)


def _timestamp(value: datetime | None) -> str:
    if value is None:
        return "CAST(NULL AS TIMESTAMP)"
    return f"CAST({sql_literal(_iso(value).replace('+00:00', ''))} AS TIMESTAMP)"


def _iso(value: datetime) -> str:
    utc = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return utc.isoformat()
