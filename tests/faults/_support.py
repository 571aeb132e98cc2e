"""Helpers of the reliability suite: warehouse digests, staged datasets, checks on raised errors.

A warehouse table is compared by a digest of its rows sorted in Python (every value as ``repr``), so
two states are equal exactly when they hold the same rows, whatever order the database returns.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging

_COUNTER = itertools.count()


def stage_table(
    root: str, data: pa.Table | Mapping[str, Sequence[Any]], *, name: str = "data", describe: bool = True
) -> DatasetRef:
    """Stage ``data`` as a dataset under ``root`` (a fresh folder per call).

    ``describe=False`` skips the checksum pass (a DuckDB connection) for the many small datasets of
    the property tests; the loader reads only the URI.
    """
    table = data if isinstance(data, pa.Table) else pa.table(dict(data))
    writer = staging.DatasetWriter(f"{root}/{name}_{next(_COUNTER)}/{name}")
    writer.write(table)
    if describe:
        return writer.finish(table.schema)
    return DatasetRef(uri=writer.uri, row_count=table.num_rows)


def query(engine: sa.Engine, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction; the rows it returned (none for DDL/DML)."""
    with engine.begin() as conn:
        bound = params if isinstance(params, Mapping) else tuple(params)
        result = conn.exec_driver_sql(sql, bound) if bound else conn.exec_driver_sql(sql)
        return [tuple(row) for row in result] if result.returns_rows else []


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _normal(value: Any) -> Any:
    """One spelling per value as the database compares it: -0.0 is 0.0 (SQL says they are equal)."""
    if isinstance(value, float) and value == 0.0:
        return 0.0
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def table_rows(engine: sa.Engine, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, normalised and sorted (by ``repr``, so NULLs and NaN sort too)."""
    rows = query(engine, f'SELECT * FROM "{table}"')
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


def table_digest(engine: sa.Engine, table: str) -> str | None:
    """A checksum of the sorted table, or None when the table does not exist."""
    if table not in tables(engine):
        return None
    return hashlib.sha256(repr(table_rows(engine, table)).encode()).hexdigest()


def warehouse_digest(engine: sa.Engine) -> dict[str, str | None]:
    """Table name -> digest, for every table of the warehouse (what "untouched" compares)."""
    return {name: table_digest(engine, name) for name in sorted(tables(engine))}


def duplicate_keys(engine: sa.Engine, table: str, key: Sequence[str]) -> int:
    """How many key values more than one row of ``table`` holds."""
    cols = ", ".join(f'"{k}"' for k in key)
    sql = f'SELECT count(*) FROM (SELECT {cols} FROM "{table}" GROUP BY {cols} HAVING count(*) > 1) AS d'
    return int(query(engine, sql)[0][0])


def assert_explains(err: BaseException, *, names: str, cause: str) -> None:
    """The error's message names ``names`` (a source, table or column) and matches ``cause``, and
    an error raised while handling another one chains it explicitly (``raise ... from err``)."""
    text = str(err)
    assert names in text, f"{type(err).__name__} does not name {names!r}: {text}"
    assert re.search(cause, text, flags=re.IGNORECASE), f"{type(err).__name__} does not say {cause!r}: {text}"
    if err.__context__ is not None and not err.__suppress_context__:
        assert err.__cause__ is not None, f"{type(err).__name__} hides what it was raised from: {text}"
