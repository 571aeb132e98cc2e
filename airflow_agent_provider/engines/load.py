"""Load a staged dataset into a SQLite or PostgreSQL warehouse, in one transaction.

The staged Parquet is read through DuckDB, which also answers every question about the data
before the warehouse is touched: column names (checked as identifiers), duplicate and NULL keys,
and whether values fit the existing columns. Then one warehouse transaction snapshots the target
when asked, creates or widens it, bulk-copies the rows (COPY on PostgreSQL, ADBC's
``adbc_ingest`` of the Arrow batches on SQLite; the next batch read meanwhile) into a temporary
table merged into the target (``INSERT ... ON CONFLICT`` for an upsert), or straight into the
target when there is nothing to merge with (a new or replaced table, a plain append; a new
PostgreSQL table gets its primary key after the COPY, one bulk index build), and checks the
result. A failed check or any error rolls everything back.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow_agent_provider.contracts import DatasetRef, StageResult
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.load_plan import Column, Staged, plan_columns, read_ahead, schema_matches
from airflow_agent_provider.engines.sqlsafe import (
    TableName,
    duplicate_example,
    duplicate_keys,
    identifier,
    insert_select,
    present_keys,
    quote_list,
    upsert_select,
)
from airflow_agent_provider.engines.warehouse import Warehouse
from airflow_agent_provider.exceptions import AgentProviderError, LoadError

if TYPE_CHECKING:
    import sqlalchemy

LoadStrategy = Literal["insert", "upsert", "replace"]
STRATEGIES: tuple[str, ...] = ("insert", "upsert", "replace")
PROGRESS_EVERY_S = 5.0


def open_warehouse(engine: sqlalchemy.engine.Engine) -> Warehouse:
    """The warehouse session for an engine's dialect (SQLite or PostgreSQL over psycopg2)."""
    name = engine.dialect.name
    if name == "sqlite":
        from airflow_agent_provider.engines.load_sqlite import SqliteWarehouse

        return SqliteWarehouse.open(engine)
    if name == "postgresql":
        from airflow_agent_provider.engines.load_postgres import PostgresWarehouse

        return PostgresWarehouse(psycopg2_engine(engine).raw_connection())
    raise ValueError(f"load_dataset supports sqlite and postgresql warehouses, not {name!r}")


def psycopg2_engine(engine: sqlalchemy.engine.Engine) -> sqlalchemy.engine.Engine:
    """The same PostgreSQL database over psycopg2 (the COPY path), whatever driver ``engine`` uses.

    Airflow's PostgresHook hands out ``postgresql+psycopg`` (psycopg 3) engines when psycopg 3 is
    installed; the bulk paths here speak psycopg2's ``copy_expert``.
    """
    if engine.dialect.name != "postgresql" or engine.dialect.driver == "psycopg2":
        return engine
    import sqlalchemy

    return sqlalchemy.create_engine(
        engine.url.set(drivername="postgresql+psycopg2"), poolclass=sqlalchemy.pool.NullPool
    )


@dataclass(frozen=True)
class LoadRequest:
    """The validated arguments of one load."""

    table: TableName
    strategy: str
    key: tuple[str, ...]
    snapshot: TableName | None
    batch_rows: int

    @classmethod
    def build(
        cls,
        *,
        target_table: str,
        strategy: str,
        upsert_key: Sequence[str] | None,
        snapshot: bool,
        snapshot_name: str | None,
        batch_rows: int,
        dialect: str,
    ) -> LoadRequest:
        table = TableName.parse(target_table, "target table")
        if dialect == "sqlite" and table.schema not in (None, "main"):
            raise ValueError(f"SQLite target {table} must be a plain table name (schemas are PostgreSQL only)")
        if strategy not in STRATEGIES:
            raise ValueError(f"load_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if isinstance(upsert_key, str):
            upsert_key = [upsert_key]
        key = tuple(identifier(k, "upsert_key column") for k in upsert_key or ())
        if strategy == "upsert" and not key:
            raise ValueError(f"load_strategy 'upsert' into {table} needs upsert_key (the columns of its key)")
        if not isinstance(batch_rows, int) or batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        return cls(table, strategy, key, _snapshot_name(table, snapshot_name) if snapshot else None, batch_rows)


def _snapshot_name(table: TableName, name: str | None) -> TableName:
    if name is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        return table.sibling(f"{table.name[:37]}__snapshot_{stamp}")
    parsed = TableName.parse(name, "snapshot")
    snapshot = parsed if parsed.schema else table.sibling(parsed.name)
    if snapshot == table:
        raise ValueError(f"snapshot_name {name!r} is the target table itself")
    return snapshot


class Progress:
    """Throttled progress lines: ``table: 150000/400000 rows (80000 rows/s)`` at most every few seconds."""

    def __init__(self, label: str, total: int, log: Callable[[str], None] | None, every: float = PROGRESS_EVERY_S):
        self.label, self.total, self.log, self.every = label, total, log, every
        self.done = 0
        self.started = self.last = time.monotonic()

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if self.log is not None and now - self.last >= self.every:
            rate = self.done / max(now - self.started, 1e-9)
            self.log(f"{self.label}: {self.done}/{self.total} rows ({rate:.0f} rows/s)")
            self.last = now


def load_dataset(
    ref: DatasetRef,
    *,
    engine: sqlalchemy.engine.Engine,
    target_table: str,
    load_strategy: LoadStrategy = "insert",
    upsert_key: Sequence[str] | None = None,
    create_snapshot_before_load: bool = False,
    snapshot_name: str | None = None,
    batch_rows: int = 50_000,
    log: Callable[[str], None] | None = None,
) -> StageResult:
    """Write a staged dataset to a warehouse table in one transaction, then check the result.

    :param ref: the staged dataset (Parquet parts).
    :param engine: the warehouse; its dialect is ``sqlite`` or ``postgresql``.
    :param target_table: ``table`` or ``schema.table`` (PostgreSQL); created when missing.
    :param load_strategy: ``insert`` appends, ``upsert`` inserts or updates by key, ``replace``
        empties the table (keeping it, its indexes and grants) and inserts; on PostgreSQL it
        empties it with ``TRUNCATE`` in the load's transaction (readers wait for the commit).
    :param upsert_key: the key columns; required for ``upsert``, the primary key of a new table.
    :param create_snapshot_before_load: copy the current table first (same transaction).
    :param snapshot_name: the snapshot's name; default ``<table>__snapshot_<utc time>``.
    :param batch_rows: rows per batch streamed from the staged data to the warehouse.
    :param log: called with progress lines (at most every few seconds).
    :raises UnsafeIdentifier: a table, schema or column name is not a plain identifier.
    :raises SchemaConflict: the data cannot go into an existing column; nothing was written.
    :raises LoadError: duplicate or NULL keys, a failed post-load check, or a database error;
        the transaction was rolled back and the target is as it was.
    """
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    request = LoadRequest.build(
        target_table=target_table,
        strategy=load_strategy,
        upsert_key=upsert_key,
        snapshot=create_snapshot_before_load,
        snapshot_name=snapshot_name,
        batch_rows=batch_rows,
        dialect=engine.dialect.name,
    )
    con = _staged_connection(ref, engine)
    try:
        staged = Staged.open(con, ref, request.key, request.table)
        progress = Progress(request.table.name, staged.rows, log)
        metrics = _LoadRun(open_warehouse(engine), staged, request, progress).run()
    finally:
        con.close()
    duration = time.monotonic() - started
    metrics |= {"target_table": str(request.table), "load_strategy": request.strategy}
    metrics["load_duration_seconds"] = round(duration, 3)
    warnings = _unwritten_warning(request, metrics["columns_not_written"])
    return StageResult(
        stage="load", status="success", metrics=metrics, warnings=warnings, duration_s=duration, started_at=started_at
    )


_UNWRITTEN_EFFECT = {
    "upsert": "updated rows keep their old values there and new rows get NULL (or the column default)",
    "insert": "the new rows get NULL (or the column default) there",
    "replace": "every row now has NULL (or the column default) there",
}


def _unwritten_warning(request: LoadRequest, columns: Sequence[str]) -> list[str]:
    """A warning about target columns the staged data no longer has: the load leaves them alone.

    Deliberately not an error and not a drop: a column removed from a transform may be on purpose or
    not, and dropping a warehouse column loses data; the warning says what happened to it instead.
    """
    if not columns:
        return []
    effect = _UNWRITTEN_EFFECT.get(request.strategy, "")
    return [
        f"target {request.table} has column(s) this load does not write: {', '.join(columns)} (the staged data "
        f"lacks them): {effect}; drop or fill them if they are gone for good"
    ]


def _staged_connection(ref: DatasetRef, engine: sqlalchemy.engine.Engine) -> Any:
    """What reads the staged data: a DuckDB over the Parquet, or, for a warehouse staging table, a
    session of that warehouse (which must be the target's database: the rows move inside it)."""
    from airflow_agent_provider.engines import warehouse_staging as ws

    if not ws.is_table_uri(ref.uri):
        return staging.connect()
    from airflow_agent_provider.engines.warehouse_sql import WarehouseCursor

    table = ws.StagedTable.parse(ref.uri)
    staged_engine = ws.engine_for(table.conn_id)
    if not ws.same_database(engine, staged_engine):
        raise LoadError(
            f"staged table {ref.uri} is in another database than the target table; a warehouse staging table's "
            "rows are written only inside its own warehouse: give the LoadOperator (or the quarantine's "
            "quarantine_conn_id) the extract's staging_conn_id"
        )
    return WarehouseCursor(staged_engine, dialect=table.dialect)


class _LoadRun:
    """The steps of one load, inside one warehouse transaction."""

    def __init__(self, wh: Warehouse, staged: Staged, request: LoadRequest, progress: Progress) -> None:
        self.wh, self.staged, self.request, self.progress = wh, staged, request, progress
        self.table = request.table
        self.stage = ""
        self.columns: list[Column] = []
        self.key_indexed = False
        self.created = False

    def run(self) -> dict[str, Any]:
        """Load; commit when every check passed, roll back on anything else."""
        try:
            self.wh.begin()
            metrics = self._load()
            self.wh.commit()
            return metrics
        except AgentProviderError:
            self._rollback()
            raise
        except Exception as err:
            self._rollback()
            raise LoadError(f"load into {self.request.table} failed and was rolled back: {err}") from err
        finally:
            self.wh.close()

    def _rollback(self) -> None:
        """Roll back; if even that fails the connection is gone, and the server drops the transaction."""
        with contextlib.suppress(Exception):
            self.wh.rollback()

    def _load(self) -> dict[str, Any]:
        wh, table = self.wh, self.wh.resolve(self.request.table)
        self.table = table
        wh.lock(table)
        existing = wh.columns(table)
        self.columns = plan_columns(wh, self.staged, self.request.table, existing)
        snapshot = self._snapshot(existing)
        added = self._prepare(existing)
        before = wh.count(table) if existing is not None else 0
        replacing = self.request.strategy == "replace" and existing is not None
        deleted = wh.empty(table, before) if replacing else 0
        written = self._write()
        after = written if self.created else wh.count(table)  # a new table holds what the database reported
        validation = self._checks(before, after)
        failed = [name for name, ok in validation.items() if not ok]
        if failed:
            label = self.request.table
            raise LoadError(f"post-load check {', '.join(failed)} failed for {label}: {validation}; rolled back")
        if self.stage:
            wh.drop_stage(self.stage)
        inserted = after - before + deleted
        return {
            "rows_loaded": self.staged.rows,
            "rows_inserted": inserted,
            "rows_updated": max(written - inserted, 0),
            "rows_deleted": deleted,
            "snapshot_created": str(self.request.snapshot) if snapshot else None,
            "table_created": self.created,
            "columns_added": added,
            "columns_not_written": self._unwritten(existing),
            "load_validation": validation,
        }

    def _unwritten(self, existing: dict[str, str] | None) -> list[str]:
        """Columns of the existing target the staged data does not have."""
        staged = {self.wh.norm(c.name) for c in self.columns}
        return [name for name in existing or {} if self.wh.norm(name) not in staged]

    @property
    def direct(self) -> bool:
        """Rows go straight into the target when there is nothing to merge them with.

        That is a table created (or emptied, for ``replace``) in this transaction, or a plain append
        with no key to check; the transaction still makes the load all-or-nothing.
        """
        return self.created or self.request.strategy == "replace" or not self.request.key

    def _snapshot(self, existing: dict[str, str] | None) -> TableName | None:
        if self.request.snapshot is None or existing is None:
            return None
        snapshot = self.wh.resolve(self.request.snapshot)
        self.wh.snapshot(self.table, snapshot)
        return snapshot

    def _prepare(self, existing: dict[str, str] | None) -> list[str]:
        """Create the table, or add the data's new columns; make sure an upsert key is unique."""
        key = self.request.key
        if existing is None:
            inline = () if self.wh.key_after_write else key
            self.wh.create_table(self.table, [(c.name, c.target) for c in self.columns], inline)
            self.created, self.key_indexed = True, bool(key)  # its primary key (PostgreSQL: built after the COPY)
            return []
        added = [c for c in self.columns if c.declared is None]
        for col in added:
            self.wh.add_column(self.table, col.name, col.target)
        if self.request.strategy == "upsert":
            _ensure_unique(self.wh, self.table, key, label=str(self.request.table))
        self.key_indexed = bool(key) and _has_unique(self.wh, self.table, key)
        return [c.name for c in added]

    def _write(self) -> int:
        """Stream the rows into the target, or into a temp table merged into it; returns rows written."""
        keyed_after = self.created and bool(self.request.key) and self.wh.key_after_write
        if self.staged.in_warehouse and not keyed_after:
            self.staged.refuse_duplicate_keys(self.request.key, self.request.table)
        if self.direct:
            written = self._copy_into(self.table.sql)
            if keyed_after:
                self._add_primary_key()
            self.wh.rebuild_indexes()  # an emptied table's keys and indexes, built once after the write
            return written
        self.stage = self.wh.create_stage([(c.name, c.target) for c in self.columns])
        self._copy_into(self.stage)
        names = [c.name for c in self.columns]
        if self.request.strategy == "upsert":
            return self.wh.execute(
                upsert_select(self.table, self.stage, names, self.request.key, differs=self.wh.differs)
            )
        return self.wh.execute(insert_select(self.table, self.stage, names))

    def _add_primary_key(self) -> None:
        """The new table's key, built after the bulk write; it refuses duplicate keys like an inline key.

        A warehouse staging table's duplicates are left to it (not checked first: the key's build
        sorts the same keys), and named after it refused them; the transaction rolls back either way.
        """
        try:
            self.wh.add_primary_key(self.table, self.request.key)
        except Exception:
            if self.staged.in_warehouse:
                self.staged.refuse_duplicate_keys(self.request.key, self.request.table)
            raise

    def _copy_into(self, target: str) -> int:
        """Write every staged row into ``target``; returns the rows the database reported written."""
        names, written = [c.name for c in self.columns], 0
        if self.staged.in_warehouse:  # the rows move inside the warehouse: one INSERT ... SELECT
            values = ", ".join(f"CAST({c.source} AS {self.wh.ddl_type(c.target)})" for c in self.columns)
            written = self.wh.execute(
                f"INSERT INTO {target} ({quote_list(names)}) SELECT {values} FROM {self.staged.scan}"
            )
            self.progress.advance(written)
            return written
        payloads = self._encoded()
        with contextlib.closing(read_ahead(payloads) if self.wh.read_ahead else payloads) as stream:
            for payload, rows in stream:
                written += self.wh.write_rows(target, names, payload)
                self.progress.advance(rows)
        return written

    def _encoded(self) -> Generator[tuple[Any, int], None, None]:
        for batch in self.staged.batches(self.columns, self.wh.wire_type, self.request.batch_rows):
            yield self.wh.encode(batch), batch.num_rows

    def _checks(self, before: int, after: int) -> dict[str, bool]:
        """The post-load checks, run inside the load's transaction."""
        rows = self.staged.rows
        present, duplicates = self._key_counts(after)
        if self.request.strategy == "insert":
            count_ok = after == before + rows
        elif self.request.strategy == "replace":
            count_ok = after == rows
        else:
            count_ok = present == rows and before <= after <= before + rows
        return {
            "row_count_match": count_ok,
            "schema_match": schema_matches(self.wh, self.table, self.columns),
            "no_duplicates": duplicates == 0,
        }

    def _key_counts(self, after: int) -> tuple[int, int]:
        """(staged keys found in the target, keys held by more than one target row).

        Where the key has a unique index, the database refused any duplicate while we wrote, so
        only a table without one is probed (``GROUP BY key HAVING count(*) > 1``).
        """
        wh, key = self.wh, self.request.key
        if not key:
            return 0, 0
        if self.direct:  # the table holds exactly the rows this load wrote
            return after, 0 if self.key_indexed else int(wh.scalar(duplicate_keys(self.table, key)))
        if self.key_indexed:
            return int(wh.scalar(present_keys(self.table, self.stage, key))), 0
        return 0, int(wh.scalar(duplicate_keys(self.table, key, among=self.stage)))


def _has_unique(wh: Warehouse, table: TableName, key: Sequence[str]) -> bool:
    wanted = frozenset(wh.norm(k) for k in key)
    return any(frozenset(wh.norm(c) for c in cols) == wanted for cols in wh.unique_keys(table))


def _ensure_unique(wh: Warehouse, table: TableName, key: Sequence[str], *, label: str) -> None:
    """An upsert needs a unique index on its key: find one or create it (refusing duplicates)."""
    if _has_unique(wh, table, key):
        return
    found = wh.fetchall(duplicate_example(table, key))
    if found:
        example = ", ".join(str(v) for v in found[0][:-1])
        raise LoadError(
            f"cannot upsert into {label} by ({', '.join(key)}): the table has no unique key on it and already "
            f"holds {found[0][-1]} rows for ({example}); deduplicate it or choose another key"
        )
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:8]
    wh.create_unique_index(table, f"uq_{table.name[:44]}_{digest}", key)
