"""How a validation reads its dataset: one connection, the Parquet footers, one aggregate query for every rule.

``Scan`` is what every check sees; a ``Check`` is a rule's share of the one query (its aggregates
and how their values become an issue). ``measure`` runs the row count, the null counts the footers
do not state, and the aggregates of every check as one query over the view ``data``, so a passing
dataset is read once (a check with a ``where`` of its own counts alone, inside the Parquet reader;
a custom SQL predicate counts alone, in a sandbox). The footers answer what they state exactly:
null counts, and the min and max of numeric columns (which prove a ``range`` rule, and bound a
bitmap for ``unique``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import Issue, QualityRule
from airflow_agent_provider.contracts.types import logical_type
from airflow_agent_provider.engines.sqlsafe import quote_ident, sql_literal
from airflow_agent_provider.engines.staging import ProcessDuckDB, arrow_dataset, connect

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class ColumnStats:
    """What the Parquet footers prove about a column: exact null count, exact min/max of a numeric column."""

    nulls: int | None = None
    low: int | float | None = None
    high: int | float | None = None
    nan_free: bool = False


@dataclass(frozen=True)
class Scan:
    """What every check needs: a connection with the view ``data``, its columns, the counts, the run's settings."""

    con: duckdb.DuckDBPyConnection
    dataset: str
    types: dict[str, str]
    sample_size: int
    reference_time: datetime
    row_count: int = 0
    non_null: Mapping[str, int] = field(default_factory=dict)
    stats: Mapping[str, ColumnStats] = field(default_factory=dict)
    others: Mapping[str, dict[str, str]] = field(default_factory=dict)
    """The run's other staged datasets a rule may read (each a view of that name): name -> column types."""

    def where(self, column: str | None) -> str:
        return f"{self.dataset}.{column or '*'}"

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        """The single row of an aggregate query."""
        rows = self.con.execute(sql, dict(params or {})).fetchall()
        if len(rows) != 1:  # an aggregate always answers one row
            raise RuntimeError(f"aggregate query returned {len(rows)} rows: {sql}")
        return tuple(rows[0])

    def sample(self, columns: Sequence[str], condition: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Up to ``sample_size`` distinct offending values (a dict per row for several columns), most frequent first."""
        if self.sample_size <= 0:
            return []
        positions = ", ".join(str(i + 1) for i in range(len(columns)))
        sql = (
            f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM data WHERE {condition} GROUP BY ALL "
            f"ORDER BY count(*) DESC, {positions} LIMIT {int(self.sample_size)}"
        )
        rows = self.con.execute(sql, dict(params or {})).fetchall()
        if len(columns) == 1:
            return [row[0] for row in rows]
        return [dict(zip(columns, row, strict=True)) for row in rows]


Finish = Callable[[Scan, tuple[Any, ...]], "Issue | None"]


def _passes(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
    return None


@dataclass(frozen=True)
class Check:
    """A rule's share of the scan: aggregates over ``data``, their parameters, and how their values become an issue."""

    rule: QualityRule
    aggregates: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    finish: Finish = _passes
    sandboxed: bool = False  # a custom SQL predicate: runs alone, on the sandbox connection
    alone: tuple[str, ...] | None = None  # the aggregates to run alone when the shared query failed
    where: str | None = (
        None  # counted alone as ``count(*) ... WHERE`` this, which DuckDB pushes into the Parquet reader
    )

    @property
    def fallback(self) -> tuple[str, ...]:
        return self.aggregates if self.alone is None else self.alone


def _locked_database() -> duckdb.DuckDBPyConnection:
    database = connect()
    database.execute("SET enable_external_access = false")
    database.execute("SET lock_configuration = true")
    return database


_SANDBOX = ProcessDuckDB(_locked_database)


def sandbox(
    uri: str, con: duckdb.DuckDBPyConnection, others: Mapping[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A cursor for custom predicates: the dataset as Arrow (typed like ``con``'s view) on a DuckDB that has
    external access switched off and its configuration locked, so a predicate reads rows, no file.

    :param others: the run's other staged datasets (name -> URI), registered under their names like ``data``
        (``con`` has a view of each).

    The locked database is shared (a cursor's registered ``data`` is its own); a new one costs 15-50 ms.
    """
    from airflow_agent_provider.engines.warehouse_staging import is_table_uri

    if is_table_uri(uri):  # a warehouse staging table: a read-only, guarded session of the warehouse
        from airflow_agent_provider.engines.warehouse_sql import open_data_view

        return open_data_view(uri, sandboxed=True, others=others)[0]  # type: ignore[return-value]
    locked = _SANDBOX.cursor()
    for name, where in {"data": uri, **(others or {})}.items():
        schema = con.sql(f"SELECT * FROM {quote_ident(name)} LIMIT 0").to_arrow_table().schema
        locked.register(name, arrow_dataset(where, schema))
    return locked


def file_list(files: Sequence[str]) -> str:
    return "[" + ", ".join(sql_literal(f) for f in files) + "]"


def footer_stats(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], types: Mapping[str, str]
) -> dict[str, ColumnStats]:
    """What the Parquet footers state exactly, for each flat column that every row group holds; {} if unreadable."""
    import duckdb

    sql = (
        "SELECT file_name, row_group_id, row_group_num_rows, path_in_schema, stats_null_count, stats_min_value, "
        f"stats_max_value, min_is_exact AND max_is_exact, stats_nan_count FROM parquet_metadata({file_list(files)})"
    )
    try:
        rows = con.execute(sql).fetchall()
    except duckdb.Error:
        return {}
    groups = {(r[0], r[1]) for r in rows}
    leaves: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        leaves[r[3]].append(r)
    return {
        name: _column_stats(types[name], found)
        for name, found in leaves.items()
        if name in types and _flat(types[name]) and len({(r[0], r[1]) for r in found}) == len(found) == len(groups)
    }


def _flat(duckdb_type: str) -> bool:
    upper = duckdb_type.upper()
    return not (upper.startswith(("STRUCT", "MAP", "UNION")) or upper.endswith("]"))


def _column_stats(duckdb_type: str, leaves: list[tuple[Any, ...]]) -> ColumnStats:
    """Exact null count; exact min and max of an integer or float column (every non-null row group must state them)."""
    nulls = None if any(r[4] is None for r in leaves) else sum(int(r[4]) for r in leaves)
    kind = logical_type(duckdb_type)
    if nulls is None or kind not in ("integer", "float") or "DECIMAL" in duckdb_type.upper():
        return ColumnStats(nulls=nulls)
    parse = int if kind == "integer" else float
    lows, highs = [], []
    for _file, _group, rows, _path, group_nulls, low, high, exact, _nans in leaves:
        if group_nulls == rows:
            continue  # only nulls: no min or max to state
        if low is None or high is None or not exact:
            return ColumnStats(nulls=nulls)
        try:
            lows.append(parse(low))
            highs.append(parse(high))
        except ValueError:
            return ColumnStats(nulls=nulls)
    if not lows:
        return ColumnStats(nulls=nulls)
    nan_free = all(r[8] == 0 for r in leaves)
    return ColumnStats(nulls=nulls, low=min(lows), high=max(highs), nan_free=nan_free)


Values = tuple[Any, ...] | Exception


def measure(plan: Scan, checks: list[Check]) -> tuple[Scan, list[Values]]:
    """One query: the row count, the non-null counts the footers do not state, the aggregates of every check.

    When that query fails (a rule's values do not fit its column, say), the counts run alone and
    each check runs alone, so that only the rule at fault becomes a ``rule_error``.
    """
    import duckdb

    counted = [c for c in plan.types if plan.stats.get(c, ColumnStats()).nulls is None]
    base = ["count(*)", *(f"count({quote_ident(c)})" for c in counted)]
    shared = [check for check in checks if not (check.sandboxed or check.where)]
    aggregates = [a for check in shared for a in check.aggregates]
    params = {name: value for check in shared for name, value in check.params.items()}
    try:
        row = plan.one(f"SELECT {', '.join(base + aggregates)} FROM data", params)
        values: list[Values] = list(_split(row[len(base) :], shared))
    except duckdb.Error:
        row = plan.one(f"SELECT {', '.join(base)} FROM data")
        values = [alone(plan, check) for check in shared]
    row_count = int(row[0])
    non_null = dict(zip(counted, map(int, row[1 : len(base)]), strict=True))
    for column, stats in plan.stats.items():
        if stats.nulls is not None:
            non_null[column] = row_count - stats.nulls
    by_check = dict(zip(map(id, shared), values, strict=True))
    by_check.update((id(check), alone(plan, check)) for check in checks if check.where and not check.sandboxed)
    scan = replace(plan, row_count=row_count, non_null={c: non_null[c] for c in plan.types})
    return scan, [by_check.get(id(check), ()) for check in checks]


def _split(row: Sequence[Any], checks: Sequence[Check]) -> list[tuple[Any, ...]]:
    out, at = [], 0
    for check in checks:
        out.append(tuple(row[at : at + len(check.aggregates)]))
        at += len(check.aggregates)
    return out


def alone(scan: Scan, check: Check) -> Values:
    """A check's aggregates in a query of their own; the error, when that fails."""
    import duckdb

    if not check.fallback:
        return ()
    query = f"SELECT {', '.join(check.fallback)} FROM data"
    if check.where:
        query = f"SELECT count(*) FROM data WHERE {check.where}"
    try:
        return scan.one(query, check.params)
    except duckdb.Error as err:
        return err
