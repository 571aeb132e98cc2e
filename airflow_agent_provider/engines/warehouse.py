"""The warehouse side of one load: a DBAPI connection running one transaction, and what each dialect fills in.

``load_sqlite.SqliteWarehouse`` and ``load_postgres.PostgresWarehouse`` implement it; the load
(``engines.load``) drives it with the plan of ``engines.load_plan``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_agent_provider.engines.sqlsafe import TableName, quote, quote_list

if TYPE_CHECKING:
    import pyarrow as pa


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
