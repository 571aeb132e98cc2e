"""Warehouse-native staging: a run's datasets as tables in the warehouse, and the SQL that runs there.

``ExtractOperator(..., staging_conn_id="warehouse", staging_schema="agent_staging")`` stages each
source as a run-scoped table in that warehouse instead of Parquet. Its dataset URI names the
table::

    postgres://<conn_id>/<schema>.<table>

and every later stage given such a URI runs inside the warehouse through the same engine
interface as on DuckDB (validation as one aggregate query, transformations as ``CREATE TABLE ...
AS SELECT``, the load as ``INSERT ... SELECT`` / ``ON CONFLICT`` from the staging table): the rows
never pass through the worker. Tested on PostgreSQL only; the SQL is written in DuckDB's dialect
and transpiled with sqlglot (:func:`to_warehouse`), so another warehouse is a dialect (and a URI
scheme) away.

Airflow-free: the operators install a connector (``conn_id -> SQLAlchemy engine``) with
:func:`set_connector`; the engines resolve a table URI's connection through it.

Table names are derived, never taken from input: ``aap_<run>_<task>_<dataset>`` where ``<run>``
and ``<task>`` are short hashes of (dag id, run id) and (task id, map index), so every table of a
run shares the prefix ``aap_<run>_`` that retention drops, and names stay within PostgreSQL's 63
characters. Names are checked identifiers and always double-quoted.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.contracts.identifiers import check_name
from airflow_agent_provider.contracts.types import logical_type
from airflow_agent_provider.engines.sqlsafe import identifier, quote, sql_literal
from airflow_agent_provider.exceptions import AgentProviderError

if TYPE_CHECKING:
    import sqlalchemy

SCHEMES: dict[str, str] = {"postgres": "postgres"}
"""Table-URI scheme -> sqlglot dialect of the warehouse (PostgreSQL is the one tested)."""
DEFAULT_SCHEMA = "agent_staging"
TABLE_PREFIX = "aap_"
_DATASET_CHARS = 40
CREATE_STAGING = "CREATE UNLOGGED TABLE"
"""How every staging table is made. UNLOGGED: its rows are not written to the WAL (a 10M-row ``CREATE
TABLE AS`` took 2.66-2.80 s unlogged against 5.47 s logged; a transform step at 10M 2.14-2.65 s against
4.92 s: per-statement profile in benchmarks/README.md, "Warehouse-native staging").
What that gives up is safe here: a staging table is run-scoped and rebuilt by a rerun of the task that
made it (``DROP`` then ``CREATE``), and the warehouse's target tables stay logged (the load writes them).
After a database crash PostgreSQL empties every unlogged table; the stages that read one (transform,
load) compare it with the row count its dataset was staged with and refuse an emptied table
(:func:`check_intact`), so a crash costs a rerun from the extract, never a silently empty load.
Unlogged tables are not replicated to standbys: stage on the primary (where they are written anyway)."""


class WarehouseStagingError(AgentProviderError):
    """A staging table URI is malformed, its connection is unknown, or the warehouse refused a statement."""


@dataclass(frozen=True)
class StagedTable:
    """A dataset staged as a table: ``postgres://<conn_id>/<schema>.<table>``."""

    conn_id: str
    schema: str
    table: str
    scheme: str = "postgres"

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.conn_id}/{self.schema}.{self.table}"

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.table)}"

    @property
    def dialect(self) -> str:
        return SCHEMES[self.scheme]

    @classmethod
    def parse(cls, uri: str) -> StagedTable:
        scheme, sep, rest = uri.partition("://")
        conn_id, _, dotted = rest.partition("/")
        schema, _, table = dotted.partition(".")
        if not sep or scheme not in SCHEMES or not conn_id or not schema or not table:
            raise WarehouseStagingError(f"{uri!r} is not a staging table URI (postgres://<conn_id>/<schema>.<table>)")
        return cls(conn_id, identifier(schema, "staging schema"), identifier(table, "staging table"), scheme)


def is_table_uri(uri: str) -> bool:
    """Whether a dataset URI names a warehouse staging table (else it is a Parquet folder)."""
    return uri.split("://", 1)[0] in SCHEMES and "://" in uri


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


def run_prefix(dag_id: str, run_id: str) -> str:
    """The name prefix every staging table of one run shares."""
    return f"{TABLE_PREFIX}{_digest(dag_id, run_id)[:10]}_"


def table_name(dag_id: str, run_id: str, task_id: str, dataset: str, *, map_index: int | None = None) -> str:
    """The run-scoped table of one dataset of one task: ``aap_<run>_<task>_<dataset>`` (at most 62 characters)."""
    check_name(dataset, "dataset name")
    task = _digest(task_id, -1 if map_index is None else int(map_index))[:6]
    return identifier(f"{run_prefix(dag_id, run_id)}{task}_{dataset.lower()[:_DATASET_CHARS]}", "staging table")


@dataclass(frozen=True)
class WarehouseStaging:
    """Where one task stages its datasets in warehouse mode: a connection, a schema, the run's ids."""

    conn_id: str
    schema: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int | None = None

    def __post_init__(self) -> None:
        identifier(self.schema, "staging_schema")
        if not self.conn_id:
            raise ValueError("staging_conn_id must name a connection")

    def table(self, dataset: str) -> StagedTable:
        name = table_name(self.dag_id, self.run_id, self.task_id, dataset, map_index=self.map_index)
        return StagedTable(self.conn_id, self.schema, name)

    def uri(self, dataset: str) -> str:
        return self.table(dataset).uri


# ---- connections ------------------------------------------------------------------------------


class _Connector:
    """The operators' ``conn_id -> engine`` factory, and the engines it made (one per connection per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.make: Callable[[str], sqlalchemy.engine.Engine] | None = None
        self.engines: dict[str, sqlalchemy.engine.Engine] = {}


_CONNECTOR = _Connector()


def set_connector(make: Callable[[str], sqlalchemy.engine.Engine] | None) -> None:
    """Install how a staging table's connection id becomes a SQLAlchemy engine (forgets engines made before)."""
    with _CONNECTOR.lock:
        _CONNECTOR.make = make
        engines, _CONNECTOR.engines = _CONNECTOR.engines, {}
    for engine in engines.values():
        engine.dispose()


def engine_for(conn_id: str) -> sqlalchemy.engine.Engine:
    """The engine of a staging connection (made once per process through the installed connector)."""
    with _CONNECTOR.lock:
        if conn_id in _CONNECTOR.engines:
            return _CONNECTOR.engines[conn_id]
        make = _CONNECTOR.make
    if make is None:
        raise WarehouseStagingError(
            f"staging table on connection {conn_id!r}: no connector is installed (the operators install one)"
        )
    engine = make(conn_id)
    if engine.dialect.name != "postgresql":
        raise WarehouseStagingError(
            f"staging_conn_id {conn_id!r} is a {engine.dialect.name} database; warehouse-native staging "
            "is tested on PostgreSQL only"
        )
    with _CONNECTOR.lock:
        return _CONNECTOR.engines.setdefault(conn_id, engine)


def same_database(engine: sqlalchemy.engine.Engine, other: sqlalchemy.engine.Engine) -> bool:
    """Whether two engines reach the same database (host, port, database name)."""
    a, b = engine.url, other.url
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)


# ---- describing a staging table ----------------------------------------------------------------

_PG_TO_DUCKDB: tuple[tuple[str, str], ...] = (
    ("timestamp with time zone", "TIMESTAMP WITH TIME ZONE"),
    ("timestamp", "TIMESTAMP"),
    ("date", "DATE"),
    ("boolean", "BOOLEAN"),
    ("bigint", "BIGINT"),
    ("smallint", "SMALLINT"),
    ("integer", "INTEGER"),
    ("numeric", "DECIMAL"),
    ("double precision", "DOUBLE"),
    ("real", "FLOAT"),
)


def duckdb_type(pg_type: str) -> str:
    """The DuckDB type name a PostgreSQL column type travels as (what ``contracts.types`` reads); else VARCHAR."""
    lower = pg_type.lower()
    return next((duck for pg, duck in _PG_TO_DUCKDB if lower.startswith(pg)), "VARCHAR")


def _pg_columns(conn: Any, table: StagedTable) -> dict[str, str]:
    rows = conn.exec_driver_sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = {sql_literal(table.schema)} AND table_name = {sql_literal(table.table)} "
        "ORDER BY ordinal_position"
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def table_columns(conn: Any, table: StagedTable) -> dict[str, str]:
    """Column name -> DuckDB type name of a staging table, in column order (``conn``: a SQLAlchemy connection)."""
    return {name: duckdb_type(kind) for name, kind in _pg_columns(conn, table).items()}


# Column types whose hash functions ``hash_record_extended`` uses (PostgreSQL 14+): a row hashed from
# its values as they are stored, without printing it as text first. At 10M rows of the benchmark's
# five-column orders, ``sum(hash_record_extended(t, 0))`` took 1.40-1.67 s against 3.32 s for
# ``sum(hashtextextended(t::text, 0))`` (psql, two parallel workers; printing the double is the cost).
# A table with a column of any other type (json, geometric, arrays, ...) is hashed through its text.
_RECORD_HASHED = ("timestamp", "date", "boolean", "bigint", "smallint", "integer", "numeric", "double precision",
                  "real", "text", "character", "uuid", "bytea", "time", "interval")  # fmt: skip


def _row_hash(types: Mapping[str, str]) -> str:
    if all(kind.lower().startswith(_RECORD_HASHED) for kind in types.values()):
        return "hash_record_extended(t, 0)"
    return "hashtextextended(t::text, 0)"


def describe_table(engine: sqlalchemy.engine.Engine, table: StagedTable, *, rows: int | None = None) -> DatasetRef:
    """Row count, logical columns, checksum (order-independent: a sum of 64-bit row hashes) and size of a
    staging table, in one scan of it. Each stage describes only the table it made, once: ``rows``, when
    the statement that made it reported them (``CREATE TABLE ... AS``), is checked against the scan's
    count instead of being counted again."""
    with engine.connect() as conn:
        pg_types = _pg_columns(conn, table)
        if not pg_types:
            raise WarehouseStagingError(f"staging table {table.uri} does not exist")
        counted, total, size = conn.exec_driver_sql(
            f"SELECT count(*), coalesce(sum({_row_hash(pg_types)}), 0), "
            f"pg_total_relation_size({sql_literal(table.sql)}::regclass) "
            f"FROM {table.sql} AS t"
        ).one()
    if rows is not None and rows != counted:
        raise WarehouseStagingError(f"staging table {table.uri} holds {counted} rows; its statement wrote {rows}")
    from airflow_agent_provider.engines.staging.reader import checksum

    types = {name: duckdb_type(kind) for name, kind in pg_types.items()}
    columns = {name: logical_type(kind) for name, kind in types.items()}
    digest = checksum(int(counted), types, int(total))
    return DatasetRef(uri=table.uri, row_count=int(counted), columns=columns, checksum=digest, bytes=int(size))


def check_intact(conn: Any, table: StagedTable, ref: DatasetRef) -> None:
    """Refuse a staging table that lost its rows since it was staged: an UNLOGGED table is emptied by
    PostgreSQL's crash recovery (see :func:`create_table_as`). Its heap is then empty (0 bytes), which
    ``pg_relation_size`` tells without reading it."""
    if not ref.row_count:
        return
    size = conn.exec_driver_sql(f"SELECT pg_relation_size(to_regclass({sql_literal(table.sql)}))").scalar()
    if not size:
        raise WarehouseStagingError(emptied(table, ref.row_count))


def emptied(table: StagedTable, rows: int) -> str:
    return (
        f"staging table {table.uri} was staged with {rows} rows and is now empty or gone (an unlogged staging "
        "table is emptied when the database restarts after a crash); rerun the run from its extract"
    )


_SCHEMA_LOCK = threading.Lock()


def ensure_schema(engine: sqlalchemy.engine.Engine, schema: str) -> None:
    """Create the staging schema unless it exists (concurrent creators: one wins, the others find it)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    with _SCHEMA_LOCK:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        except (IntegrityError, ProgrammingError):  # created by another process meanwhile
            with engine.connect() as conn:
                found = conn.exec_driver_sql(
                    f"SELECT 1 FROM pg_namespace WHERE nspname = {sql_literal(identifier(schema, 'staging schema'))}"
                ).first()
            if found is None:
                raise


def create_table_as(engine: sqlalchemy.engine.Engine, table: StagedTable, query: str, params: Mapping[str, Any]) -> int:
    """Stage a query's rows as ``table`` inside the warehouse (``CREATE UNLOGGED TABLE ... AS``), replacing
    an earlier try; returns the rows it wrote.

    The query must be one SELECT: it is wrapped as a subquery, and a ``;`` outside strings and
    comments (a second statement, or one that closes the wrapper and starts another) is refused. It
    runs in a writable session, not the read-only one of a source read: a call of a function that
    reads files, settings or other databases or changes sequences (``warehouse_sql``'s list) is refused.
    """
    from sqlalchemy import text

    body = query.strip().rstrip(";").strip()
    _refuse_statements(body, table.dialect)
    ensure_schema(engine, table.schema)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.sql}")
        made = conn.execute(
            text(f"{CREATE_STAGING} {table.sql} AS SELECT * FROM (\n{body}\n) AS aap_source"), dict(params)
        )
        return int(made.rowcount)


def _refuse_statements(query: str, dialect: str) -> None:
    """Refuse a query holding a statement separator or calling a forbidden function (sqlglot's tokenizer
    knows the dialect's strings and comments)."""
    import sqlglot
    from sqlglot.tokens import TokenType

    from airflow_agent_provider.engines.warehouse_sql import FORBIDDEN_PREFIXES

    try:
        tokens = sqlglot.tokenize(query, read=dialect)
    except sqlglot.errors.TokenError as err:
        raise WarehouseStagingError(f"the query does not tokenize as {dialect} SQL: {err}") from err
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        raise WarehouseStagingError("the query must be one SELECT statement; it holds a ';' between statements")
    for token, after in itertools.pairwise(tokens):
        if after.token_type == TokenType.L_PAREN and token.text.lower().startswith(FORBIDDEN_PREFIXES):
            raise WarehouseStagingError(
                f"function {token.text}() is not allowed in a query staged inside the warehouse "
                "(it reads files, settings or other databases, or changes state)"
            )


def run_sql(conn: Any, sql: str) -> int:
    """Run one statement as written on a SQLAlchemy connection's driver cursor (no parameter
    interpolation, so a ``%`` in the text stays a ``%``); returns the rows it reported."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def drop_table(engine: sqlalchemy.engine.Engine, table: StagedTable) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.sql}")


# ---- retention ----------------------------------------------------------------------------------


def run_table_patterns(dag_id: str, run_id: str, uris: list[str] | tuple[str, ...]) -> list[str]:
    """``postgres://<conn_id>/<schema>.aap_<run>_*``: every staging table of the run in each (connection,
    schema) where its datasets were staged, as retention removes them (intermediate steps included)."""
    prefix = run_prefix(dag_id, run_id)
    found = set()
    for uri in uris:
        if is_table_uri(uri):
            table = StagedTable.parse(uri)
            if table.table.startswith(prefix):
                found.add(f"{table.scheme}://{table.conn_id}/{table.schema}.{prefix}*")
    return sorted(found)


def drop_tables_matching(pattern: str) -> list[str]:
    """Drop the tables a :func:`run_table_patterns` pattern names; returns the tables dropped."""
    base, star, rest = pattern.partition("*")
    if not star or rest:
        raise WarehouseStagingError(f"{pattern!r} is not a staging table pattern (ends with *)")
    table = StagedTable.parse(base + "x")  # checks the connection, schema and prefix parts
    prefix = table.table[:-1]
    if not prefix.startswith(TABLE_PREFIX) or len(prefix) != len(TABLE_PREFIX) + 11:
        raise WarehouseStagingError(f"{pattern!r} does not name one run's staging tables")
    engine = engine_for(table.conn_id)
    with engine.begin() as conn:
        names = [
            str(r[0])
            for r in conn.exec_driver_sql(
                f"SELECT tablename FROM pg_tables WHERE schemaname = {sql_literal(table.schema)} "
                f"AND starts_with(tablename, {sql_literal(prefix)})"
            ).fetchall()
        ]
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(name)}")
    return names
