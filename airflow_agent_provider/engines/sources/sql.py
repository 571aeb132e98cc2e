"""SQL sources: one query through a SQLAlchemy engine, streamed into the staged dataset.

PostgreSQL through psycopg2 streams ``COPY (query) TO STDOUT`` as CSV that pyarrow parses with the
column types PostgreSQL reports: several times faster than fetching rows into Python. Every other
database (and any PostgreSQL value pyarrow cannot parse) goes through the row path: a server-side
cursor where the dialect has one, rows turned into Arrow column by column.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import SqlSource
from airflow_agent_provider.engines.sources import Sink, first_line, rechunk
from airflow_agent_provider.engines.sources.values import column_array, empty_text_table, text_array
from airflow_agent_provider.engines.staging.writer import empty_table
from airflow_agent_provider.exceptions import SourceError
from airflow_agent_provider.redaction import redact

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection, Engine

_COPY_BLOCK_BYTES = 8 << 20
_TRAILING_RE = re.compile(r"[\s;]+$")


class _Unparseable(Exception):
    """COPY output that pyarrow cannot parse with the reported types; use the row path."""


def extract_sql(source: SqlSource, engine: Engine, sink: Sink) -> None:
    """Stage the rows of ``source.query`` (with ``source.parameters`` bound) chunk by chunk."""
    try:
        if _copy_capable(engine) and _copy_postgres(source, engine, sink):
            return
        _stream_rows(source, engine, sink)
    except SourceError:
        raise
    except Exception as err:
        if _is_db_error(err, engine):
            raise SourceError(source.name, f"query failed: {_db_message(err, engine)}") from err
        raise


def _is_db_error(err: Exception, engine: Engine) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    dbapi = getattr(engine.dialect, "loaded_dbapi", None) or engine.dialect.dbapi
    dbapi_error = getattr(dbapi, "Error", ())
    return isinstance(err, SQLAlchemyError) or (bool(dbapi_error) and isinstance(err, dbapi_error))


def _db_message(err: Exception, engine: Engine) -> str:
    """The database's own error text: no SQL echo, no connection URI, no password."""
    original = getattr(err, "orig", None) or err
    return redact(first_line(str(original)) or type(original).__name__, [engine.url.password])


@contextmanager
def _connect(source: SqlSource, engine: Engine) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except Exception as err:
        if _is_db_error(err, engine):
            raise SourceError(source.name, f"cannot connect to the database: {_db_message(err, engine)}") from err
        raise
    with conn:
        yield conn


def _check_names(source: SqlSource, names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SourceError(
                source.name,
                f"the query returns column {name!r} more than once; give each column a unique name "
                "(SELECT a.id AS a_id, b.id AS b_id ...)",
            )
        seen.add(name)
    return names


# ---- the row path (any database) -------------------------------------------------------------


def _stream_rows(source: SqlSource, engine: Engine, sink: Sink) -> None:
    """Stage the query's rows chunk by chunk, reading them once.

    A column whose values change type from one chunk to the next (SQLite allows it) becomes text
    from that chunk on; the chunks staged before keep their type, and reading the staged dataset
    reconciles the parts to text (DuckDB's ``union_by_name``), so the query never runs twice.
    """
    from sqlalchemy import text

    with _connect(source, engine) as conn:
        server_side = bool(conn.dialect.supports_server_side_cursors)
        options = {"stream_results": True, "yield_per": source.chunk_size} if server_side else {}
        result = conn.execution_options(**options).execute(text(source.query), source.parameters)
        if not result.returns_rows:
            raise SourceError(source.name, "the query returns no rows; an extract query must be a SELECT")
        names = _check_names(source, list(result.keys()))
        # Without a server-side cursor SQLAlchemy buffers nothing, so the DBAPI cursor is read directly.
        fetch = result.fetchmany if server_side else result.cursor.fetchmany
        columns = _Columns(sink)
        while rows := fetch(source.chunk_size):
            sink.write(columns.table(names, rows))
        if sink.rows == 0:
            sink.write(empty_text_table(names))


class _Columns:
    """The Arrow type each column has had so far, and the columns that turned to text."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._types: dict[str, pa.DataType] = {}
        self._text: set[str] = set()

    def table(self, names: list[str], rows: Sequence[Any]) -> pa.Table:
        import pyarrow as pa

        columns = zip(*rows, strict=True)
        arrays = [self._array(name, list(values)) for name, values in zip(names, columns, strict=True)]
        return pa.Table.from_arrays(arrays, names=names)

    def _array(self, name: str, values: list[Any]) -> pa.Array:
        """One column of a chunk as Arrow; a column whose values change type becomes text."""
        import pyarrow as pa

        if name in self._text:
            return text_array(values)
        array = column_array(values)
        if array is None:
            return self._to_text(name, values, "mixes value types")
        if pa.types.is_null(array.type):
            return array
        known = self._types.get(name)
        widened = array.type if known is None else _widened(name, known, array.type)
        if widened is None:
            return self._to_text(name, values, f"holds {known} and then {array.type} values")
        self._types[name] = widened
        return array

    def _to_text(self, name: str, values: list[Any], why: str) -> pa.Array:
        self._text.add(name)
        if name in self._types:
            self._sink.say(f"column {name!r} {why}; staged as text from here on (read once)")
        return text_array(values)


def _widened(name: str, known: pa.DataType, found: pa.DataType) -> pa.DataType | None:
    """The type both chunks fit (int64 and float64: float64); None when there is none."""
    import pyarrow as pa

    if known == found:
        return found
    try:
        both = pa.unify_schemas([pa.schema([(name, known)]), pa.schema([(name, found)])], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return both.field(name).type


# ---- the PostgreSQL COPY path ----------------------------------------------------------------


def _copy_capable(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2"


def _copy_postgres(source: SqlSource, engine: Engine, sink: Sink) -> bool:
    """Stage the query through COPY; False when the row path must do it instead."""
    with _connect(source, engine) as conn:
        dbapi: Any = conn.connection.dbapi_connection
        if dbapi is None or getattr(dbapi, "autocommit", False):
            return False
        with dbapi.cursor() as cur:
            sql = _literal_sql(conn, cur, source)
            cur.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
            schema = _describe(source, dbapi, cur, sql)
            if schema is None:
                return False
            try:
                _copy_into(cur, sql, schema, sink)
            except _Unparseable as err:
                conn.invalidate()
                sink.say(f"COPY output not parseable ({first_line(str(err), 120)}); reading rows instead")
                sink.restart()
                return False
            except BaseException:
                conn.invalidate()
                raise
    return True


def _literal_sql(conn: Connection, cur: Any, source: SqlSource) -> bytes:
    """The query with its parameters quoted in by psycopg2 (COPY takes no bind parameters)."""
    from sqlalchemy import text

    compiled = text(_TRAILING_RE.sub("", source.query)).compile(dialect=conn.dialect)
    params = compiled.construct_params(source.parameters)
    return bytes(cur.mogrify(compiled.string, params))


def _describe(source: SqlSource, dbapi: Any, cur: Any, sql: bytes) -> pa.Schema | None:
    """Column names and Arrow types of the query, without running it; None if it cannot be wrapped."""
    import pyarrow as pa

    try:
        cur.execute(b"SELECT * FROM (" + sql + b"\n) AS aap_extract LIMIT 0")
    except Exception:
        dbapi.rollback()  # the row path runs the query as written and reports its own error
        return None
    names = _check_names(source, [column.name for column in cur.description])
    return pa.schema([(name, _arrow_type(column)) for name, column in zip(names, cur.description, strict=True)])


def _arrow_type(column: Any) -> pa.DataType:
    import pyarrow as pa

    simple = {
        16: pa.bool_(),
        20: pa.int64(),
        21: pa.int16(),
        23: pa.int32(),
        26: pa.int64(),
        700: pa.float32(),
        701: pa.float64(),
        1082: pa.date32(),
        1114: pa.timestamp("us"),
        1184: pa.timestamp("us", tz="UTC"),
    }
    if column.type_code == 1700:  # numeric: exact when declared with a precision, else float
        precision, scale = column.precision, column.scale
        if precision and 0 < precision <= 38 and scale is not None and 0 <= scale <= precision:
            return pa.decimal128(precision, scale)
        return pa.float64()
    return simple.get(column.type_code, pa.string())


def _copy_into(cur: Any, sql: bytes, schema: pa.Schema, sink: Sink) -> None:
    """Run COPY in a thread writing into a pipe, and parse the pipe here chunk by chunk."""
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                cur.copy_expert(b"COPY (" + sql + b"\n) TO STDOUT WITH (FORMAT csv)", out, size=1 << 16)
        except BaseException as err:
            failures.append(err)

    thread = threading.Thread(target=produce, name=f"copy-{sink.name}", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb") as stream:
            _parse_copy(stream, schema, sink)
    except _Unparseable:
        thread.join()
        _raise_database_failure(failures)
        raise
    finally:
        thread.join()
    _raise_database_failure(failures)


def _raise_database_failure(failures: list[BaseException]) -> None:
    """A database error during COPY wins over what the parser made of the cut-off stream."""
    if failures and not isinstance(failures[0], BrokenPipeError):
        raise failures[0]


def _parse_copy(stream: Any, schema: pa.Schema, sink: Sink) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=schema.names, block_size=_COPY_BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        true_values=["t"],
        false_values=["f"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        if "Empty CSV file" in str(err):
            sink.write(empty_table(schema))
            return
        raise _Unparseable(str(err)) from err
    try:
        for table in rechunk(reader, sink.chunk_size):
            sink.write(table)
    except pa.ArrowInvalid as err:
        raise _Unparseable(str(err)) from err
