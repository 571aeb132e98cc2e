"""The quality rules of a validation: one aggregate query per rule, a sample only on violation.

Every rule counts its violations over the view ``data`` of a DuckDB connection. Values from the
rule (lists, bounds, patterns, times) travel as bound parameters, never as SQL text. Custom SQL
predicates run in a sandbox: a connection that sees the dataset as a registered Arrow dataset and
has external access switched off and its configuration locked, so a predicate reads rows, no file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import Issue, QualityRule
from airflow_agent_provider.engines.staging import connect, logical_type, part_files, quote_ident

if TYPE_CHECKING:
    import duckdb

MESSAGE_VALUE_CHARS = 40
MESSAGE_LIST_ITEMS = 10


@dataclass(frozen=True)
class Scan:
    """What every check needs: a connection with the view ``data``, its columns, the run's settings."""

    con: duckdb.DuckDBPyConnection
    dataset: str
    types: dict[str, str]
    row_count: int
    sample_size: int
    reference_time: datetime

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


def show(value: Any) -> str:
    """A value as a message shows it: short, one line, strings quoted."""
    if isinstance(value, str):
        cut = value if len(value) <= MESSAGE_VALUE_CHARS else value[: MESSAGE_VALUE_CHARS - 1] + "…"
        return repr(cut)
    text = str(value).replace("\n", " ")
    return text if len(text) <= MESSAGE_VALUE_CHARS else text[: MESSAGE_VALUE_CHARS - 1] + "…"


def show_list(values: Sequence[Any]) -> str:
    shown = ", ".join(show(v) for v in values[:MESSAGE_LIST_ITEMS])
    return f"[{shown}{', …' if len(values) > MESSAGE_LIST_ITEMS else ''}]"


def _example(sample: Sequence[Any]) -> str:
    return f", e.g. {show(sample[0])}" if sample else ""


def _violations(scan: Scan, rule: QualityRule, condition: str, params: dict[str, Any]) -> tuple[int, list[Any]]:
    """How many rows meet ``condition`` (a violation), and a sample of them when there are any."""
    (bad,) = scan.one(f"SELECT count(*) FILTER (WHERE {condition}) FROM data", params)
    return (bad, scan.sample([str(rule.column)], condition, params)) if bad else (0, [])


def _issue(scan: Scan, rule: QualityRule, kind: str, **fields: Any) -> Issue:
    return Issue(type=kind, dataset=scan.dataset, column=rule.column, rule=rule.label, **fields)


def missing_column(scan: Scan, rule: QualityRule) -> Issue:
    known = ", ".join(scan.types) or "none"
    return _issue(
        scan,
        rule,
        "missing_column",
        expected=rule.column,
        found=list(scan.types),
        message=f"{scan.where(rule.column)}: rule {rule.label} names a column the dataset lacks (has: {known})",
    )


def rule_error(scan: Scan, rule: QualityRule, cause: str) -> Issue:
    first_line = cause.strip().splitlines()[0] if cause.strip() else "unknown error"
    return _issue(
        scan,
        rule,
        "rule_error",
        expected=rule.predicate,
        found=first_line,
        message=f"{scan.where(rule.column)}: rule {rule.label} could not run: {first_line}",
    )


def _not_null(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    (nulls,) = scan.one(f"SELECT count(*) FILTER (WHERE {col} IS NULL) FROM data")
    if not nulls:
        return None
    return _issue(
        scan,
        rule,
        "not_null_violation",
        expected="not null",
        found="null",
        affected_rows=nulls,
        message=f"{scan.where(rule.column)}: {nulls} of {scan.row_count} rows are null",
    )


def _unique(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    groups = f"FROM data WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1"
    rows, values = scan.one(f"SELECT coalesce(sum(n), 0), count(*) FROM (SELECT count(*) AS n {groups})")
    if not rows:
        return None
    limit = int(scan.sample_size)
    sample = [
        r[0] for r in scan.con.execute(f"SELECT {col} {groups} ORDER BY count(*) DESC, 1 LIMIT {limit}").fetchall()
    ]
    return _issue(
        scan,
        rule,
        "duplicate_values",
        expected="unique values",
        found=f"{values} duplicated values",
        affected_rows=int(rows),
        sample=sample,
        message=f"{scan.where(rule.column)}: {int(rows)} rows share {values} duplicated values{_example(sample)}",
    )


def _in_list(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    allowed = [v for v in rule.values or [] if v is not None]
    if logical_type(scan.types[str(rule.column)]) == "string":
        allowed = [str(v) for v in allowed]
    params = {f"v{i}": value for i, value in enumerate(allowed)}
    placeholders = ", ".join(f"${name}" for name in params)
    condition = f"{col} IS NOT NULL" + (f" AND {col} NOT IN ({placeholders})" if params else "")
    bad, sample = _violations(scan, rule, condition, params)
    if not bad:
        return None
    return _issue(
        scan,
        rule,
        "value_not_in_list",
        expected=allowed,
        found=sample,
        affected_rows=bad,
        sample=sample,
        message=f"{scan.where(rule.column)}: {bad} rows not in {show_list(allowed)}{_example(sample)}",
    )


def _range(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    bounds = {"lo": (rule.min, f"{col} < $lo"), "hi": (rule.max, f"{col} > $hi")}
    params = {name: value for name, (value, _) in bounds.items() if value is not None}
    condition = " OR ".join(check for name, (_, check) in bounds.items() if name in params)
    bad, low, high = scan.one(f"SELECT count(*) FILTER (WHERE {condition}), min({col}), max({col}) FROM data", params)
    if not bad:
        return None
    sample = scan.sample([str(rule.column)], condition, params)
    wanted = f"[{_bound(rule.min)}, {_bound(rule.max)}] (found {show(low)} to {show(high)})"
    return _issue(
        scan,
        rule,
        "out_of_range",
        expected=[rule.min, rule.max],
        found=[low, high],
        affected_rows=bad,
        sample=sample,
        message=f"{scan.where(rule.column)}: {bad} rows outside {wanted}{_example(sample)}",
    )


def _bound(value: Any) -> str:
    return "open" if value is None else show(value)


def _regex(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    params = {"pattern": rule.pattern}
    condition = f"{col} IS NOT NULL AND NOT regexp_full_match(CAST({col} AS VARCHAR), $pattern)"
    bad, sample = _violations(scan, rule, condition, params)
    if not bad:
        return None
    return _issue(
        scan,
        rule,
        "regex_mismatch",
        expected=rule.pattern,
        found=sample,
        affected_rows=bad,
        sample=sample,
        message=f"{scan.where(rule.column)}: {bad} rows do not match {show(rule.pattern)}{_example(sample)}",
    )


def _time_bounds(duckdb_type: str, reference: datetime, days: int) -> tuple[Any, Any]:
    """Oldest and newest accepted values, typed like the column (date, naive UTC or aware timestamp)."""
    lower, upper = reference - timedelta(days=days), reference + timedelta(days=1)
    kind = duckdb_type.upper()
    if logical_type(kind) == "date":
        return lower.date(), upper.date()
    if "TIME ZONE" in kind:
        return lower, upper
    return lower.replace(tzinfo=None), upper.replace(tzinfo=None)


def _within_last_n_days(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
    duckdb_type = scan.types[str(rule.column)]
    if logical_type(duckdb_type) not in ("date", "timestamp"):
        return rule_error(scan, rule, f"within_last_n_days needs a date or timestamp column, found {duckdb_type}")
    lower, upper = _time_bounds(duckdb_type, scan.reference_time, int(rule.days or 0))
    params = {"lo": lower, "hi": upper}
    old, new = scan.one(
        f"SELECT count(*) FILTER (WHERE {col} < $lo), count(*) FILTER (WHERE {col} > $hi) FROM data", params
    )
    if not old and not new:
        return None
    sample = scan.sample([str(rule.column)], f"{col} < $lo OR {col} > $hi", params)
    return _issue(
        scan,
        rule,
        "stale_values",
        expected=[lower, upper],
        found=sample,
        affected_rows=old + new,
        sample=sample,
        message=(
            f"{scan.where(rule.column)}: {old + new} rows outside the {rule.days} days before "
            f"{scan.reference_time:%Y-%m-%d %H:%M} UTC ({old} older than {lower}, {new} later than {upper})"
            f"{_example(sample)}"
        ),
    )


def _row_count_between(scan: Scan, rule: QualityRule) -> Issue | None:
    count = scan.row_count
    if (rule.min is None or count >= rule.min) and (rule.max is None or count <= rule.max):
        return None
    return _issue(
        scan,
        rule,
        "row_count_out_of_range",
        expected=[rule.min, rule.max],
        found=count,
        message=f"{scan.where(None)}: {count} rows, expected between {_bound(rule.min)} and {_bound(rule.max)}",
    )


def _predicate_columns(scan: Scan, rule: QualityRule) -> list[str]:
    """The columns a predicate reads (for its sample), else every column."""
    if rule.column in scan.types:
        return [str(rule.column)]
    import sqlglot
    from sqlglot import exp

    by_lower = {name.lower(): name for name in scan.types}
    try:
        tree = sqlglot.parse_one(str(rule.predicate), read="duckdb")
    except sqlglot.errors.ParseError:
        return list(scan.types)
    named = {by_lower[c.name.lower()] for c in tree.find_all(exp.Column) if c.name.lower() in by_lower}
    return [name for name in scan.types if name in named] or list(scan.types)


def _sql(scan: Scan, rule: QualityRule) -> Issue | None:
    condition = f"NOT (\n{rule.predicate}\n)"
    query = f"SELECT count(*) FILTER (WHERE {condition}) FROM data"
    if len(scan.con.extract_statements(query)) != 1:
        return rule_error(scan, rule, "the predicate must be one boolean SQL expression, not statements")
    (bad,) = scan.one(query)
    if not bad:
        return None
    sample = scan.sample(_predicate_columns(scan, rule), condition)
    return _issue(
        scan,
        rule,
        "sql_predicate_failed",
        expected=rule.predicate,
        found=f"{bad} rows where it is false",
        affected_rows=bad,
        sample=sample,
        message=f"{scan.where(rule.column)}: {bad} rows fail {show(rule.predicate)}{_example(sample)}",
    )


_COLUMN_RULES: dict[str, Callable[[Scan, QualityRule, str], Issue | None]] = {
    "not_null": _not_null,
    "unique": _unique,
    "in_list": _in_list,
    "range": _range,
    "regex": _regex,
    "within_last_n_days": _within_last_n_days,
}


def check_rule(scan: Scan, rule: QualityRule) -> Issue | None:
    """The issue a rule finds, or ``None`` when the data meets it. Never raises for bad data or SQL."""
    import duckdb

    try:
        if rule.rule == "row_count_between":
            return _row_count_between(scan, rule)
        if rule.rule == "sql":
            return _sql(scan, rule)
        if rule.column not in scan.types:
            return missing_column(scan, rule)
        return _COLUMN_RULES[rule.rule](scan, rule, quote_ident(str(rule.column)))
    except duckdb.Error as err:
        return rule_error(scan, rule, str(err))


def sandbox(uri: str, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A connection for custom predicates: the dataset as Arrow (typed like ``con``'s view), no file access."""
    import pyarrow.dataset as ds

    schema = con.sql("SELECT * FROM data LIMIT 0").to_arrow_table().schema
    locked = connect()
    locked.register("data", ds.dataset(part_files(uri), schema=schema, format="parquet"))
    locked.execute("SET enable_external_access = false")
    locked.execute("SET lock_configuration = true")
    return locked


def utc(moment: datetime | None) -> datetime:
    """An aware UTC datetime; a naive one is read as UTC, ``None`` is now."""
    if moment is None:
        return datetime.now(timezone.utc)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
