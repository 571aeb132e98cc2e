"""The quality rules of a validation: each rule's share of one aggregate scan, a sample only on violation.

A rule is planned as a ``Check``: the aggregate expressions that count its violations over the view
``data`` and a ``finish`` step that turns their values into an issue. The validate engine puts the
aggregates of every rule into one query with the null counts, so a passing dataset is read once
(``in_list`` over text counts in its own ``WHERE`` query, which the Parquet reader answers per
dictionary entry); only a rule that found something runs more queries (its sample, the detail of
its message). Values from the rule (lists, bounds, patterns, times) travel as bound parameters, never as SQL text.
Custom SQL predicates pass the one SQL gate (``engines.sqlgate``: one expression that reads only
``data`` and the run's other staged datasets, by name) and run in a sandbox: a connection that sees
those datasets as registered Arrow datasets and has external access switched off and its
configuration locked, so a predicate reads rows, no file. ``in_dataset`` reads the other dataset
through its view on the validation's connection.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_agent_provider.contracts import Issue, QualityRule
from airflow_agent_provider.contracts.types import logical_type
from airflow_agent_provider.engines.sqlsafe import quote_ident
from airflow_agent_provider.engines.validate_scan import Check, ColumnStats, Scan

MESSAGE_VALUE_CHARS = 40
MESSAGE_LIST_ITEMS = 10
BITMAP_MAX_SPAN = 1 << 26  # unique over integers with a known span up to this wide: a bitmap (8 MiB), no hash table
BITMAP_BUDGET_BITS = 1 << 29  # every DuckDB thread holds a bitmap of its own: 64 MiB over all of them
_BITMAP_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}


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


def _issue(scan: Scan, rule: QualityRule, kind: str, **fields: Any) -> Issue:
    return Issue(type=kind, dataset=scan.dataset, column=rule.column, rule=rule.label, **fields)


def _counted(
    rule: QualityRule, condition: str, params: dict[str, Any], build: Callable[..., Issue], *, own: bool = False
) -> Check:
    """A check that counts the rows meeting ``condition`` and, when there are any, samples them for ``build``.

    ``own``: count them in a query of its own whose ``WHERE`` DuckDB pushes into the Parquet reader.
    """

    def finish(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
        (bad,) = values
        if not bad:
            return None
        return build(scan, bad, scan.sample([str(rule.column)], condition, params))

    return Check(rule, (f"count(*) FILTER (WHERE {condition})",), params, finish, where=condition if own else None)


def _fixed(rule: QualityRule, make: Callable[[Scan], Issue | None]) -> Check:
    """A check that needs no aggregate of its own."""
    return Check(rule, finish=lambda scan, _values: make(scan))


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


_HOLDS = {
    "string": "text",
    "integer": "whole numbers",
    "float": "numbers",
    "boolean": "true/false values",
    "date": "dates",
    "timestamp": "timestamps",
}
_TYPE_ERRORS = ("Cannot compare values of type", "Conversion Error", "No function matches", "Could not convert")


def rule_error(scan: Scan, rule: QualityRule, cause: str) -> Issue:
    """A rule that could not run; a type clash is said in the user's terms, the engine's words kept in ``found``."""
    first_line = cause.strip().splitlines()[0] if cause.strip() else "unknown error"
    message = f"{scan.where(rule.column)}: rule {rule.label} could not run: {first_line}"
    holds = _HOLDS.get(logical_type(scan.types.get(str(rule.column), "")) or "")
    needs = _needs(rule)
    if holds and needs and holds != needs and any(marker in first_line for marker in _TYPE_ERRORS):
        message = (
            f"{scan.where(rule.column)}: rule {rule.label} could not run: the column holds {holds} and the rule "
            f"needs {needs}"
        )
    return _issue(scan, rule, "rule_error", expected=rule.predicate or needs, found=first_line, message=message)


def _needs(rule: QualityRule) -> str | None:
    """What values a column rule compares with, in words; None when the rule has no such need."""
    if rule.rule == "within_last_n_days":
        return "dates or timestamps"
    if rule.rule == "regex":
        return "text"
    values = [rule.min, rule.max] if rule.rule == "range" else list(rule.values or []) if rule.rule == "in_list" else []
    values = [value for value in values if value is not None]
    if not values:
        return None
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return "numbers"
    if all(isinstance(value, str) for value in values):
        return "text"
    return None


def _not_null(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    """The null counts of the scan answer it (from the Parquet footers when they hold exact counts)."""

    def make(scan: Scan) -> Issue | None:
        nulls = scan.row_count - scan.non_null[str(rule.column)]
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

    return _fixed(rule, make)


def _unique(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    """Distinct values against present values: a bitmap over an integer span the footers prove, else count(DISTINCT).

    A value outside the footers' span makes the bitmap raise; the check then runs alone with
    count(DISTINCT). Only a mismatch runs the exact group-by that counts and samples the duplicates.
    """
    exact = (f"count({col})", f"count(DISTINCT {col})")
    stats = scan.stats.get(str(rule.column), ColumnStats())
    bitmap = exact
    if scan.types[str(rule.column)].upper() in _BITMAP_TYPES and stats.low is not None and stats.high is not None:
        lo, hi = int(stats.low), int(stats.high)
        if hi - lo < min(BITMAP_MAX_SPAN, BITMAP_BUDGET_BITS // (os.cpu_count() or 1)):
            bitmap = (f"count({col})", f"bit_count(bitstring_agg({col}, {lo}, {hi}))")

    def finish(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
        present, distinct = values
        return None if present == (distinct or 0) else _duplicates(scan, rule, col)

    return Check(rule, bitmap, finish=finish, alone=exact)


def _duplicates(scan: Scan, rule: QualityRule, col: str) -> Issue | None:
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


def _floating(scan: Scan, rule: QualityRule) -> bool:
    """A FLOAT or DOUBLE column: its Parquet footers leave NaN out of min and max, and DuckDB folds a
    comparison the footers' range decides (``x > 100`` is false for every row, NaN included, when the
    footers' max is 99), so a rule that NaN violates names NaN explicitly."""
    return scan.types[str(rule.column)].upper() in ("FLOAT", "DOUBLE")


def _in_dataset(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    """Rows whose value is not among the values of a column of another staged dataset (an anti-join)."""
    other, other_column = str(rule.dataset), rule.reference_column
    if other not in scan.others:
        cause = f"no other staged dataset named {other!r} in this run (has: {', '.join(sorted(scan.others)) or 'none'})"
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))
    if other_column not in scan.others[other]:
        cause = f"dataset {other} has no column {other_column!r} (has: {', '.join(scan.others[other])})"
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))
    ref = quote_ident(other_column)
    condition = f"{col} IS NOT NULL AND {col} NOT IN (SELECT {ref} FROM {quote_ident(other)} WHERE {ref} IS NOT NULL)"
    where = f"{other}.{other_column}"

    def build(scan: Scan, bad: int, sample: list[Any]) -> Issue:
        return _issue(
            scan,
            rule,
            "value_not_in_dataset",
            expected=where,
            found=sample,
            affected_rows=bad,
            sample=sample,
            message=f"{scan.where(rule.column)}: {bad} rows whose value is not in {where}{_example(sample)}",
        )

    return _counted(rule, condition, {}, build, own=True)


def _in_list(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    allowed = [v for v in rule.values or [] if v is not None]
    if logical_type(scan.types[str(rule.column)]) == "string":
        allowed = [str(v) for v in allowed]
    params = {f"{key}_v{i}": value for i, value in enumerate(allowed)}
    placeholders = ", ".join(f"${name}" for name in params)
    condition = f"{col} IS NOT NULL" + (f" AND {col} NOT IN ({placeholders})" if params else "")
    if params and _floating(scan, rule) and not any(isinstance(v, float) and math.isnan(v) for v in allowed):
        condition = f"{col} IS NOT NULL AND ({col} NOT IN ({placeholders}) OR isnan({col}))"
    # Over text the reader tests the list once per dictionary entry: ~10x cheaper alone than inside the shared scan.
    own = scan.types[str(rule.column)].upper() == "VARCHAR"

    def build(scan: Scan, bad: int, sample: list[Any]) -> Issue:
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

    return _counted(rule, condition, params, build, own=own)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _proven_in_range(scan: Scan, rule: QualityRule) -> bool:
    """The footers' exact min and max lie within the bounds (NaN, above every bound in DuckDB, must be ruled out)."""
    stats = scan.stats.get(str(rule.column), ColumnStats())
    if stats.low is None or stats.high is None or not all(b is None or _number(b) for b in (rule.min, rule.max)):
        return False
    above_ok = rule.max is None or (stats.high <= rule.max and (stats.nan_free or isinstance(stats.high, int)))
    return (rule.min is None or stats.low >= rule.min) and above_ok


def _range(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    """Rows outside the bounds; the scan also takes the min and max for the message (a query of their own
    would be answered from the footers, which leave NaN out)."""
    if _proven_in_range(scan, rule):
        return Check(rule)
    bounds = {f"{key}_lo": (rule.min, "<"), f"{key}_hi": (rule.max, ">")}
    params = {name: value for name, (value, _) in bounds.items() if value is not None}
    condition = " OR ".join(f"{col} {op} ${name}" for name, (_, op) in bounds.items() if name in params)
    if rule.max is not None and _floating(scan, rule):
        condition += f" OR isnan({col})"  # NaN is above every bound

    def finish(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
        bad, low, high = values
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

    return Check(rule, (f"count(*) FILTER (WHERE {condition})", f"min({col})", f"max({col})"), params, finish)


def _bound(value: Any) -> str:
    return "open" if value is None else show(value)


def _regex(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    params = {f"{key}_pattern": rule.pattern}
    condition = f"{col} IS NOT NULL AND NOT regexp_full_match(CAST({col} AS VARCHAR), ${key}_pattern)"

    def build(scan: Scan, bad: int, sample: list[Any]) -> Issue:
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

    return _counted(rule, condition, params, build)


def _time_bounds(duckdb_type: str, reference: datetime, days: int) -> tuple[Any, Any]:
    """Oldest and newest accepted values, typed like the column (date, naive UTC or aware timestamp)."""
    lower, upper = reference - timedelta(days=days), reference + timedelta(days=1)
    kind = duckdb_type.upper()
    if logical_type(kind) == "date":
        return lower.date(), upper.date()
    if "TIME ZONE" in kind:
        return lower, upper
    return lower.replace(tzinfo=None), upper.replace(tzinfo=None)


def _within_last_n_days(scan: Scan, rule: QualityRule, col: str, key: str) -> Check:
    duckdb_type = scan.types[str(rule.column)]
    if logical_type(duckdb_type) not in ("date", "timestamp"):
        cause = f"within_last_n_days needs a date or timestamp column, found {duckdb_type}"
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))
    lower, upper = _time_bounds(duckdb_type, scan.reference_time, int(rule.days or 0))
    params = {f"{key}_lo": lower, f"{key}_hi": upper}
    older, later = f"{col} < ${key}_lo", f"{col} > ${key}_hi"

    def finish(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
        old, new = values
        if not old and not new:
            return None
        sample = scan.sample([str(rule.column)], f"{older} OR {later}", params)
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

    return Check(rule, (f"count(*) FILTER (WHERE {older})", f"count(*) FILTER (WHERE {later})"), params, finish)


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


def _sql(scan: Scan, rule: QualityRule) -> Check:
    """A custom predicate, counted alone in the sandbox (its text is the author's, so it shares no query)."""
    import duckdb

    from airflow_agent_provider.engines.sqlgate import check_sql
    from airflow_agent_provider.exceptions import UnsafeSQL

    condition = f"NOT (\n{rule.predicate}\n)"
    aggregate = f"count(*) FILTER (WHERE {condition})"
    if len(scan.con.extract_statements(f"SELECT {aggregate} FROM data")) != 1:
        cause = "the predicate must be one boolean SQL expression, not statements"
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))
    try:
        # the gate reads DuckDB's parse tree: on a warehouse cursor (DuckDB-dialect SQL) it parses on its own
        gate_con = scan.con if isinstance(scan.con, duckdb.DuckDBPyConnection) else None
        check_sql(f"SELECT {aggregate} FROM data", ["data", *scan.others], gate_con)
    except UnsafeSQL as refused:
        cause = f"the predicate is refused: {refused}"
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))

    def finish(scan: Scan, values: tuple[Any, ...]) -> Issue | None:
        (bad,) = values
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

    return Check(rule, (aggregate,), finish=finish, sandboxed=True)


_COLUMN_RULES: dict[str, Callable[[Scan, QualityRule, str, str], Check]] = {
    "not_null": _not_null,
    "unique": _unique,
    "in_list": _in_list,
    "in_dataset": _in_dataset,
    "range": _range,
    "regex": _regex,
    "within_last_n_days": _within_last_n_days,
}


def plan_rule(scan: Scan, rule: QualityRule, key: str) -> Check:
    """A rule's check; ``key`` prefixes its parameter names so that every check can share one query."""
    import duckdb

    try:
        if rule.rule == "row_count_between":
            return _fixed(rule, lambda scan: _row_count_between(scan, rule))
        if rule.rule == "sql":
            return _sql(scan, rule)
        if rule.column not in scan.types:
            return _fixed(rule, lambda scan: missing_column(scan, rule))
        return _COLUMN_RULES[rule.rule](scan, rule, quote_ident(str(rule.column)), key)
    except duckdb.Error as err:
        cause = str(err)
        return _fixed(rule, lambda scan: rule_error(scan, rule, cause))


def finish_check(scan: Scan, check: Check, values: tuple[Any, ...] | Exception) -> Issue | None:
    """The issue a check finds from its aggregate values (or the error its query raised). Never raises for bad data."""
    import duckdb

    if isinstance(values, Exception):
        return rule_error(scan, check.rule, str(values))
    try:
        return check.finish(scan, values)
    except duckdb.Error as err:
        return rule_error(scan, check.rule, str(err))


def utc(moment: datetime | None) -> datetime:
    """An aware UTC datetime; a naive one is read as UTC, ``None`` is now."""
    if moment is None:
        return datetime.now(timezone.utc)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
