"""The plan of a load: what the staged data holds, what the warehouse offers, how columns map.

Everything here is decided before the warehouse is written to. DuckDB answers the questions about
the staged Parquet (column names and types, NULL and duplicate keys, values that would not fit an
existing column); the warehouse (``engines.warehouse.Warehouse``) answers what its table holds, and
:func:`read_ahead` encodes the next batch while the warehouse writes the current one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.contracts.types import DUCKDB_TYPES, LOGICAL_TYPES, LogicalType, logical_type
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.sqlsafe import TableName, identifier, quote, quote_list
from airflow_agent_provider.engines.warehouse import Warehouse
from airflow_agent_provider.exceptions import LoadError, SchemaConflict

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

T = TypeVar("T")

# (incoming logical type, existing column family) -> how the values get there; None incoming is a
# column of NULLs only. "ok": always; "cast": when every value casts; "whole": when every float is whole.
_COMPATIBLE: dict[tuple[LogicalType | None, str], str] = {
    ("integer", "integer"): "ok",
    ("integer", "float"): "ok",
    ("float", "float"): "ok",
    ("float", "integer"): "whole",
    ("boolean", "boolean"): "ok",
    ("boolean", "integer"): "ok",
    ("date", "date"): "ok",
    ("date", "timestamp"): "ok",
    ("timestamp", "timestamp"): "ok",
    **{("string", family): "cast" for family in ("integer", "float", "boolean", "date", "timestamp")},
    **{(logical, "string"): "ok" for logical in (*LOGICAL_TYPES, None)},
    **{(None, family): "ok" for family in LOGICAL_TYPES},
}


@dataclass(frozen=True)
class Column:
    """One staged column and the column of the target table it goes to."""

    name: str
    source: str  # DuckDB expression reading the staged value
    incoming: LogicalType | None  # logical type of the staged data (None: NULLs only)
    target: str  # logical type the target column holds
    declared: str | None  # the existing column's declared type; None when the column is new
    probe: str = "ok"

    def value_sql(self, wire: str | None) -> str:
        value = f"CAST({self.source} AS {DUCKDB_TYPES[self.target]})"
        return f"CAST({value} AS {wire})" if wire else value

    def probe_sql(self) -> str:
        """A DuckDB predicate true for the staged values that cannot go into the target column."""
        if self.probe == "whole":
            whole = f"TRY_CAST({self.source} AS BIGINT)"
            return f"{self.source} IS NOT NULL AND ({whole} IS NULL OR {self.source} <> {whole})"
        return f"{self.source} IS NOT NULL AND TRY_CAST({self.source} AS {DUCKDB_TYPES[self.target]}) IS NULL"


@dataclass
class Staged:
    """What DuckDB knows about the staged dataset before the warehouse is touched."""

    con: duckdb.DuckDBPyConnection
    scan: str
    types: dict[str, str]
    rows: int
    in_warehouse: bool = False  # a warehouse staging table: ``scan`` names it, ``con`` is a warehouse session

    @classmethod
    def open(cls, con: duckdb.DuckDBPyConnection, ref: DatasetRef, key: Sequence[str], table: TableName) -> Staged:
        from airflow_agent_provider.engines import warehouse_staging as ws

        in_warehouse = ws.is_table_uri(ref.uri)
        if in_warehouse:
            staged_table = ws.StagedTable.parse(ref.uri)
            scan, types = staged_table.sql, ws.table_columns(con._conn, staged_table)  # type: ignore[attr-defined]
        else:
            scan = staging.scan_sql(ref.uri)
            types = staging.columns_of(con, scan)
        for name in types:
            identifier(name, f"column of the staged data for {table}")
        if not types:
            raise LoadError(f"staged data {ref.uri} for {table} has no columns")
        missing = [k for k in key if k not in types]
        if missing:
            raise LoadError(f"upsert_key {missing} of {table} is not in the staged data (columns: {', '.join(types)})")
        staged = cls(con, scan, types, 0, in_warehouse)
        if in_warehouse:
            staged.rows = staged.keys_in_warehouse(key, table, ref)
            return staged
        staged.rows = int(staged.row(f"SELECT count(*) FROM {scan}")[0])
        staged.refuse_bad_keys(key, table)
        return staged

    def keys_in_warehouse(self, key: Sequence[str], table: TableName, ref: DatasetRef) -> int:
        """The staging table's row count, with NULL keys refused, in one scan; duplicates are
        :meth:`refuse_duplicate_keys`' (the load asks where no primary key built after the write finds them).

        A row count other than the one the dataset was staged with means the table changed since (an
        unlogged staging table emptied by a crash): refused.
        """
        from airflow_agent_provider.engines import warehouse_staging as ws

        nulls = " OR ".join(f"{quote(k)} IS NULL" for k in key) or "false"
        found = self.con.native(f"SELECT count(*), count(*) FILTER (WHERE {nulls}) FROM {self.scan}")  # type: ignore[attr-defined]
        rows, null_keys = (int(v) for v in found.fetchall()[0])
        if rows != ref.row_count:
            staged_table = ws.StagedTable.parse(ref.uri)
            raise LoadError(
                ws.emptied(staged_table, ref.row_count)
                if not rows
                else f"staging table {ref.uri} holds {rows} rows; it was staged with {ref.row_count}"
            )
        if null_keys:
            raise LoadError(f"{null_keys} staged rows for {table} have a NULL in the key ({', '.join(key)})")
        return rows

    def refuse_duplicate_keys(self, key: Sequence[str], table: TableName) -> None:
        """Refuse a staging table whose key repeats (warehouse mode; the Parquet path checks in :meth:`open`).

        ``count(DISTINCT key)`` against the row count says whether any key repeats (a sort: 1.7-1.8 s at
        6M keys, where the ``GROUP BY key HAVING count(*) > 1`` of the Parquet path took PostgreSQL
        8.5-13 s as a parallel hash aggregate spilling to disk); the duplicates are counted only when
        there are some, for the message.
        """
        if not key:
            return
        distinct = quote(key[0]) if len(key) == 1 else f"({quote_list(key)})"
        keys = self.con.native(f"SELECT count(DISTINCT {distinct}) FROM {self.scan}").fetchall()[0][0]  # type: ignore[attr-defined]
        if int(keys) != self.rows:
            self.refuse_bad_keys(key, table)  # counts the duplicate keys and names one

    def source(self, name: str) -> str:
        if self.types[name].upper().startswith("TIMESTAMP WITH TIME ZONE"):
            return f"timezone('UTC', {quote(name)})"
        return quote(name)

    def logical(self, name: str) -> LogicalType | None:
        return logical_type(self.types[name])

    def refuse_bad_keys(self, key: Sequence[str], table: TableName) -> None:
        """NULL or duplicate keys would make the load ambiguous: refuse them before writing."""
        if not key:
            return
        nulls = self.scalar(f"SELECT count(*) FROM {self.scan} WHERE {' OR '.join(f'{quote(k)} IS NULL' for k in key)}")
        if nulls:
            raise LoadError(f"{nulls} staged rows for {table} have a NULL in the key ({', '.join(key)})")
        keys = quote_list(key)
        dupes = f"SELECT {keys} FROM {self.scan} GROUP BY {keys} HAVING count(*) > 1"
        count = self.scalar(f"SELECT count(*) FROM ({dupes})")  # one aggregation; the example only on failure
        if count:
            example = self.row(f"{dupes} LIMIT 1")
            raise LoadError(
                f"{count} duplicate keys for ({', '.join(key)}) in the staged data for {table}, "
                f"e.g. ({', '.join(str(v) for v in example)})"
            )

    def row(self, sql: str) -> tuple[Any, ...]:
        """The first row of a query (empty when none), with the result read to the end."""
        rows = self.con.execute(sql).fetchall()
        return tuple(rows[0]) if rows else ()

    def scalar(self, sql: str) -> Any:
        return self.row(sql)[0]

    def batches(
        self, columns: Sequence[Column], wire: Callable[[str], str | None], batch_rows: int
    ) -> pa.RecordBatchReader:
        exprs = ", ".join(f"{c.value_sql(wire(c.target))} AS {quote(c.name)}" for c in columns)
        return self.con.sql(f"SELECT {exprs} FROM {self.scan}").to_arrow_reader(batch_rows)


def plan_columns(wh: Warehouse, staged: Staged, table: TableName, existing: dict[str, str] | None) -> list[Column]:
    """Match each staged column to its target column; raise SchemaConflict for any misfit."""
    declared = {wh.norm(n): t for n, t in (existing or {}).items()}
    columns = [_column(wh, staged, table, name, declared.get(wh.norm(name))) for name in staged.types]
    _probe_values(staged, table, [c for c in columns if c.probe != "ok"])
    return columns


def _column(wh: Warehouse, staged: Staged, table: TableName, name: str, declared: str | None) -> Column:
    incoming = staged.logical(name)
    new_type = incoming or "string"
    if declared is None:
        return Column(name, staged.source(name), incoming, new_type, None)
    family = wh.family(declared)
    if family == "any":
        return Column(name, staged.source(name), incoming, new_type, declared)
    how = _COMPATIBLE.get((incoming, family))
    if how is None:
        raise SchemaConflict(
            f"table {table} column {name}: existing type {declared} cannot hold incoming {incoming} data"
        )
    return Column(name, staged.source(name), incoming, family, declared, how)


def _probe_values(staged: Staged, table: TableName, columns: Sequence[Column]) -> None:
    if not columns:
        return
    parts = [
        f"count(*) FILTER (WHERE {c.probe_sql()}), min(CAST({c.source} AS VARCHAR)) FILTER (WHERE {c.probe_sql()})"
        for c in columns
    ]
    row = staged.row(f"SELECT {', '.join(parts)} FROM {staged.scan}")
    for i, col in enumerate(columns):
        bad, example = row[2 * i], row[2 * i + 1]
        if bad:
            raise SchemaConflict(
                f"table {table} column {col.name}: existing type {col.declared} cannot hold incoming "
                f"{col.incoming} data ({bad} values do not convert, e.g. {example!r})"
            )


def schema_matches(wh: Warehouse, table: TableName, columns: Sequence[Column]) -> bool:
    """Every staged column exists in the target with a type that holds its values."""
    declared = {wh.norm(n): t for n, t in (wh.columns(table) or {}).items()}
    for col in columns:
        found = declared.get(wh.norm(col.name))
        if found is None:
            return False
        family = wh.family(found)
        if family != "any" and (col.incoming, family) not in _COMPATIBLE:
            return False
    return True


def read_ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """``items``, produced by a thread at most ``depth`` ahead of the consumer.

    The thread is stopped and joined before this generator ends (exhausted, closed or raising), so
    what it reads (the DuckDB connection) is never used after; its error is raised here.
    """
    import queue
    import threading

    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                box.put(entry, timeout=0.1)
                return

    def produce() -> None:
        try:
            for item in items:
                put((False, item))
                if stop.is_set():
                    return
            put((True, None))
        except BaseException as err:  # handed to the consumer, which raises it
            put((True, err))

    thread = threading.Thread(target=produce, name="load-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            last, value = box.get()
            if last and value is not None:
                raise value
            if last:
                return
            yield value
    finally:
        stop.set()
        thread.join()
