"""The plan of a load: what the staged data holds, what the warehouse offers, how columns map.

Everything here is decided before the warehouse is written to. DuckDB answers the questions about
the staged Parquet (column names and types, NULL and duplicate keys, values that would not fit an
existing column); a :class:`Warehouse` is the dialect's side of one load transaction, and
:func:`read_ahead` encodes the next batch while the warehouse writes the current one.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.sqlsafe import TableName, identifier, quote, quote_list
from airflow_agent_provider.exceptions import LoadError, SchemaConflict

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

T = TypeVar("T")

# The DuckDB type each logical type travels as.
_DUCK_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
# (incoming logical type, existing column family) -> how the values get there.
# "ok": always; "cast": when every value casts; "whole": when every float is a whole number.
_COMPATIBLE = {
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
    **{(logical, "string"): "ok" for logical in (*_DUCK_TYPES, "null")},
    **{("null", family): "ok" for family in _DUCK_TYPES},
}


class Warehouse(ABC):
    """One DBAPI connection running one load transaction; a dialect module fills in the rest."""

    dialect: ClassVar[str]
    differs: ClassVar[str] = "IS DISTINCT FROM"
    case_insensitive: ClassVar[bool] = False
    # Build a new table's primary key after its rows are in (one bulk index build instead of
    # maintaining the index row by row); a dialect that cannot add a primary key later keeps False.
    key_after_write: ClassVar[bool] = False
    # Encode the next batch in a thread while this one is written: worth it where the write waits
    # on the server (COPY); not where it holds the GIL row by row (SQLite's executemany).
    read_ahead: ClassVar[bool] = False

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.dbapi = raw.driver_connection
        self.cursor = self.dbapi.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(sql, tuple(params))
        return int(self.cursor.rowcount)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(sql, tuple(params))
        return [tuple(r) for r in self.cursor.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.fetchall(sql, params)
        return rows[0][0] if rows else None

    def count(self, table: TableName) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table.sql}"))

    def norm(self, name: str) -> str:
        """How the database compares column names."""
        return name.lower() if self.case_insensitive else name

    def create_table(self, table: TableName, columns: Sequence[tuple[str, str]], key: Sequence[str]) -> None:
        defs = [f"{quote(name)} {self.ddl_type(logical)}" for name, logical in columns]
        if key:
            defs.append(f"PRIMARY KEY ({quote_list(key)})")
        self.execute(f"CREATE TABLE {table.sql} ({', '.join(defs)})")

    def add_primary_key(self, table: TableName, key: Sequence[str]) -> None:
        self.execute(f"ALTER TABLE {table.sql} ADD PRIMARY KEY ({quote_list(key)})")

    def add_column(self, table: TableName, name: str, logical: str) -> None:
        self.execute(f"ALTER TABLE {table.sql} ADD COLUMN {quote(name)} {self.ddl_type(logical)}")

    def empty(self, table: TableName, rows: int) -> int:
        """Delete every row of ``table`` (which holds ``rows``) inside the transaction; returns the rows deleted."""
        return self.execute(f"DELETE FROM {table.sql}")

    def rebuild_indexes(self) -> None:
        """Build again what :meth:`empty` set aside for the bulk write (nothing, unless a dialect does)."""
        return None

    def snapshot(self, table: TableName, snapshot: TableName) -> None:
        self.execute(f"DROP TABLE IF EXISTS {snapshot.sql}")
        self.execute(f"CREATE TABLE {snapshot.sql} AS SELECT * FROM {table.sql}")

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Restore the connection's settings and give it back to the pool."""

    @abstractmethod
    def resolve(self, table: TableName) -> TableName:
        """The table name with the schema the database would use."""

    @abstractmethod
    def columns(self, table: TableName) -> dict[str, str] | None:
        """Column name -> declared type of an existing table; ``None`` when there is no such table."""

    @abstractmethod
    def family(self, declared: str) -> str:
        """The logical type a declared column type holds ("any" or "other" when none fits)."""

    @abstractmethod
    def ddl_type(self, logical: str) -> str: ...

    @abstractmethod
    def wire_type(self, logical: str) -> str | None:
        """The DuckDB type values of a logical type are sent as, when not their own."""

    @abstractmethod
    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """The column sets of the table's unique constraints and indexes (without predicates)."""

    @abstractmethod
    def lock(self, table: TableName) -> None: ...

    @abstractmethod
    def create_unique_index(self, table: TableName, name: str, key: Sequence[str]) -> None: ...

    @abstractmethod
    def create_stage(self, columns: Sequence[tuple[str, str]]) -> str:
        """Create the temporary staging table; returns its SQL name."""

    def encode(self, batch: pa.RecordBatch) -> Any:
        """A batch in the form :meth:`write_rows` sends (may run in the read-ahead thread)."""
        return batch

    @abstractmethod
    def write_rows(self, target: str, names: Sequence[str], payload: Any) -> int:
        """Bulk-write one encoded batch into a table (the target or the staging table); returns the rows written."""

    @abstractmethod
    def drop_stage(self, stage: str) -> None: ...


@dataclass(frozen=True)
class Column:
    """One staged column and the column of the target table it goes to."""

    name: str
    source: str  # DuckDB expression reading the staged value
    incoming: str  # logical type of the staged data
    target: str  # logical type the target column holds
    declared: str | None  # the existing column's declared type; None when the column is new
    probe: str = "ok"

    def value_sql(self, wire: str | None) -> str:
        value = f"CAST({self.source} AS {_DUCK_TYPES[self.target]})"
        return f"CAST({value} AS {wire})" if wire else value

    def probe_sql(self) -> str:
        """A DuckDB predicate true for the staged values that cannot go into the target column."""
        if self.probe == "whole":
            whole = f"TRY_CAST({self.source} AS BIGINT)"
            return f"{self.source} IS NOT NULL AND ({whole} IS NULL OR {self.source} <> {whole})"
        return f"{self.source} IS NOT NULL AND TRY_CAST({self.source} AS {_DUCK_TYPES[self.target]}) IS NULL"


@dataclass
class Staged:
    """What DuckDB knows about the staged dataset before the warehouse is touched."""

    con: duckdb.DuckDBPyConnection
    scan: str
    types: dict[str, str]
    rows: int

    @classmethod
    def open(cls, con: duckdb.DuckDBPyConnection, ref: DatasetRef, key: Sequence[str], table: TableName) -> Staged:
        scan = staging.scan_sql(ref.uri)
        types = staging.columns_of(con, scan)
        for name in types:
            identifier(name, f"column of the staged data for {table}")
        if not types:
            raise LoadError(f"staged data {ref.uri} for {table} has no columns")
        missing = [k for k in key if k not in types]
        if missing:
            raise LoadError(f"upsert_key {missing} of {table} is not in the staged data (columns: {', '.join(types)})")
        staged = cls(con, scan, types, 0)
        staged.rows = int(staged.row(f"SELECT count(*) FROM {scan}")[0])
        staged.refuse_bad_keys(key, table)
        return staged

    def source(self, name: str) -> str:
        if self.types[name].upper().startswith("TIMESTAMP WITH TIME ZONE"):
            return f"timezone('UTC', {quote(name)})"
        return quote(name)

    def logical(self, name: str) -> str:
        return staging.logical_type(self.types[name])

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
    new_type = "string" if incoming == "null" else incoming
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
