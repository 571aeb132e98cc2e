"""The SQLite side of a load: one ``BEGIN IMMEDIATE`` transaction (DDL included), rows written
with ``executemany`` of multi-row ``INSERT`` statements into a TEMP table (or straight into a new
or replaced target). A new table whose key is one integer column keys it as ``INTEGER PRIMARY KEY``
(the rowid: no second index, rows kept in key order).

SQLite has no DATE, TIMESTAMP or BOOLEAN storage: dates and timestamps are kept as ISO text,
booleans as 0/1 integers. Two float values cannot be kept: SQLite stores NaN as NULL, and -0.0
reads back as 0.0 (whole REAL values are stored as integers).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.engines.sqlsafe import TableName, quote, quote_list
from airflow_agent_provider.engines.warehouse import Warehouse
from airflow_agent_provider.exceptions import LoadError

if TYPE_CHECKING:
    import pyarrow as pa

_DDL_TYPES = {
    "integer": "BIGINT",
    "float": "REAL",
    "string": "TEXT",
    "boolean": "INTEGER",
    "date": "TEXT",
    "timestamp": "TEXT",
}
# Declared-type fragments -> the logical type the column holds, first match wins (SQLite's
# affinity rules, refined for the names that mean dates, timestamps and booleans).
_FAMILIES = (
    ("BOOL", "boolean"),
    ("TIMESTAMP", "timestamp"),
    ("DATETIME", "timestamp"),
    ("DATE", "date"),
    ("INT", "integer"),
    ("CHAR", "string"),
    ("CLOB", "string"),
    ("TEXT", "string"),
    ("REAL", "float"),
    ("FLOA", "float"),
    ("DOUB", "float"),
    ("NUMERIC", "float"),
    ("DECIMAL", "float"),
)


BUSY_TIMEOUT_MS = 120_000
ROWS_PER_INSERT = 500  # rows per multi-row INSERT statement
MAX_PARAMETERS = 32_766  # SQLite's default bound-parameter limit since 3.32


class SqliteWarehouse(Warehouse):
    """A load transaction on a SQLite database (the ``main`` schema)."""

    dialect = "sqlite"
    differs = "IS NOT"
    case_insensitive = True

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self._isolation = self.dbapi.isolation_level

    def begin(self) -> None:
        self.dbapi.isolation_level = None  # we issue BEGIN/COMMIT ourselves, DDL included
        self.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # parallel loads (backfills) wait their turn
        self.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        if self.dbapi.in_transaction:  # some errors end the transaction themselves
            self.execute("ROLLBACK")

    def close(self) -> None:
        self.cursor.close()
        self.dbapi.isolation_level = self._isolation
        self.raw.close()

    def resolve(self, table: TableName) -> TableName:
        """Always the ``main`` schema, so a TEMP table of the same name never shadows the target."""
        return TableName(table.name, "main")

    def columns(self, table: TableName) -> dict[str, str] | None:
        kind = self.scalar("SELECT type FROM main.sqlite_master WHERE lower(name) = lower(?)", (table.name,))
        if kind is None:
            return None
        if kind != "table":
            raise LoadError(f"target {table.name} is a {kind}, not a table")
        return dict(self.fetchall("SELECT name, type FROM pragma_table_info(?, 'main')", (table.name,)))

    def create_table(self, table: TableName, columns: Sequence[tuple[str, str]], key: Sequence[str]) -> None:
        """A single integer key becomes ``INTEGER PRIMARY KEY``: the rowid itself, no separate index.

        The column then holds only integers (its logical type) and the rows are stored in key order.
        """
        logical = dict(columns)
        if len(key) != 1 or logical.get(key[0]) != "integer":
            super().create_table(table, columns, key)
            return
        types = {name: "INTEGER PRIMARY KEY" if name == key[0] else self.ddl_type(kind) for name, kind in columns}
        defs = [f"{quote(name)} {declared}" for name, declared in types.items()]
        self.execute(f"CREATE TABLE {table.sql} ({', '.join(defs)})")

    def family(self, declared: str) -> str:
        upper = declared.upper()
        return next((logical for fragment, logical in _FAMILIES if fragment in upper), "any")

    def ddl_type(self, logical: str) -> str:
        return _DDL_TYPES.get(logical, "TEXT")

    def wire_type(self, logical: str) -> str | None:
        return "VARCHAR" if logical in ("date", "timestamp") else None

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        pk = self.fetchall("SELECT name FROM pragma_table_info(?, 'main') WHERE pk > 0", (table.name,))
        keys = [frozenset(r[0].lower() for r in pk)] if pk else []
        indexes = self.fetchall(
            "SELECT name FROM pragma_index_list(?, 'main') WHERE \"unique\" = 1 AND partial = 0", (table.name,)
        )
        for (index,) in indexes:
            cols = [r[0] for r in self.fetchall("SELECT name FROM pragma_index_info(?, 'main')", (index,))]
            if cols and None not in cols:
                keys.append(frozenset(c.lower() for c in cols))
        return keys

    def lock(self, table: TableName) -> None:
        """``BEGIN IMMEDIATE`` already holds the database's write lock."""

    def create_unique_index(self, table: TableName, name: str, key: Sequence[str]) -> None:
        self.execute(f"CREATE UNIQUE INDEX main.{quote(name)} ON {quote(table.name)} ({quote_list(key)})")

    def create_stage(self, columns: Sequence[tuple[str, str]]) -> str:
        stage = f"temp.{quote('_aap_stage_' + uuid.uuid4().hex[:12])}"
        defs = ", ".join(f"{quote(name)} {self.ddl_type(logical)}" for name, logical in columns)
        self.execute(f"CREATE TEMP TABLE {stage} ({defs})")
        return stage

    def write_rows(self, target: str, names: Sequence[str], payload: pa.RecordBatch) -> int:
        """Multi-row ``INSERT ... VALUES (...), (...)`` statements (fewer steps), the remainder row by row.

        ``to_pylist`` is exact (ints stay ints, NULL is None) and, in pyarrow 26, converted in C as fast
        as NumPy's ``tolist``; ``to_numpy`` would import pandas on first use (about 1 s CPU a process).
        """
        columns = [column.to_pylist() for column in payload.columns]
        insert = f"INSERT INTO {target} ({quote_list(names)}) VALUES "
        row = f"({', '.join('?' * len(names))})"
        per = max(1, min(ROWS_PER_INSERT, MAX_PARAMETERS // len(names)))
        full = payload.num_rows // per * per if per > 1 else 0
        written = 0
        if full:
            self.cursor.executemany(insert + ", ".join([row] * per), _row_groups(columns, full, per))
            written = int(self.cursor.rowcount)
        self.cursor.executemany(insert + row, zip(*(values[full:] for values in columns), strict=True))
        return written + int(self.cursor.rowcount)

    def drop_stage(self, stage: str) -> None:
        self.execute(f"DROP TABLE {stage}")


def _row_groups(columns: Sequence[list[Any]], rows: int, per: int) -> list[list[Any]]:
    """The first ``rows`` rows, ``per`` rows at a time, flattened row by row into one parameter list."""
    width = len(columns)
    flat: list[Any] = [None] * (rows * width)
    for j, values in enumerate(columns):
        flat[j::width] = values[:rows]  # list slice assignment: C speed, no per-value Python work
    step = per * width
    return [flat[i : i + step] for i in range(0, len(flat), step)]
