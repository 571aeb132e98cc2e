"""Validate a staged dataset: schema, null rates and quality rules, all in DuckDB over its Parquet.

Validation never moves data and never raises for bad data: every finding is an ``Issue`` and the
status says whether any of them fails the stage. Only bad arguments raise. A passing dataset is read
once: one aggregate query counts the rows, the nulls of every column and the violations of every
rule (``FILTER`` clauses); the Parquet footers answer what they state exactly (null counts, the
min and max of numeric columns) and so drop work from that query. Two kinds of rule count alone:
``in_list`` over text (its ``WHERE`` goes into the Parquet reader, which tests each dictionary entry
once, ~10x cheaper than a ``FILTER`` in the shared scan) and custom SQL predicates (in a sandbox).
Only a rule that found something runs more queries (its sample). The queries run on a connection
to one in-memory DuckDB per process, opened once: opening a database costs more than validating
a small dataset.

Rules may read the run's other staged datasets (``others``): ``in_dataset`` checks a column's values
against a column of another dataset, and a ``sql`` predicate may read them by name in a subquery.
Each is a view of its name next to ``data`` (on a warehouse staging table: the run's other staging
tables of that warehouse, read there; Parquet and tables are not mixed); the validation result records them
(:func:`referenced_datasets`) so that a quarantine or a remediation validates its rows the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from airflow_agent_provider.contracts import DatasetRef, Issue, QualityRule, StageResult
from airflow_agent_provider.contracts.types import DUCKDB_TYPES, LOGICAL_TYPES, logical_type
from airflow_agent_provider.engines.sqlsafe import quote_ident
from airflow_agent_provider.engines.staging import columns_of, part_files, shared_cursor
from airflow_agent_provider.engines.validate_rules import finish_check, plan_rule, show, utc
from airflow_agent_provider.engines.validate_scan import (
    Check,
    Scan,
    Values,
    alone,
    file_list,
    footer_stats,
    measure,
    sandbox,
)


@dataclass
class _Findings:
    """Issues that fail the stage, and findings that are only worth a warning."""

    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schema_match: bool = True
    rules_failed: int = 0

    def add(self, issue: Issue, *, fails: bool = True) -> None:
        if fails:
            self.issues.append(issue)
        else:
            self.warnings.append(issue.summary())


def validate_dataset(
    ref: DatasetRef,
    *,
    dataset: str,
    expected_schema: Mapping[str, str] | None = None,
    quality_rules: Sequence[QualityRule] = (),
    fail_on_schema_mismatch: bool = True,
    fail_on_null_rate_exceeds: float | None = None,
    reference_time: datetime | None = None,
    sample_size: int = 5,
    others: Mapping[str, DatasetRef] | None = None,
    allow_extra_columns: bool = False,
) -> StageResult:
    """Check a staged dataset against a schema, a null-rate threshold and quality rules.

    :param ref: the staged dataset (from an upstream stage result).
    :param dataset: its name, recorded on every issue.
    :param expected_schema: column -> integer, float, string, boolean, date or timestamp.
    :param quality_rules: rules from ``contracts.parse_quality_rules``.
    :param fail_on_schema_mismatch: schema issues fail the stage; when False they become warnings.
    :param fail_on_null_rate_exceeds: a column with a larger share of nulls (0.05 = 5 %) is an issue.
    :param reference_time: the end of the data interval, for ``within_last_n_days`` (default now, UTC).
    :param sample_size: at most this many distinct offending values per issue.
    :param others: the run's other staged datasets by name, which ``in_dataset`` rules and ``sql``
        predicates may read (a name equal to ``dataset`` or ``data`` is left out).
    :param allow_extra_columns: columns not in ``expected_schema`` are fine (a partial schema); by
        default they are named in one warning.
    :raises ValueError: bad arguments, e.g. an ``in_dataset`` rule naming a dataset ``others`` lacks.
    :returns: a ``validate`` stage result, status ``pass`` or ``fail``; the data stays where it is.
    """
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    schema = _check_arguments(ref, expected_schema, quality_rules, fail_on_null_rate_exceeds, sample_size)
    readable = _readable_others(dataset, ref.uri, others, quality_rules)
    con, types, stats = _open(ref)
    try:
        plan = Scan(
            con, dataset, types, sample_size, utc(reference_time), stats=stats, others=_other_views(con, readable)
        )
        checks = [plan_rule(plan, rule, f"r{i}") for i, rule in enumerate(quality_rules)]
        scan, values = measure(plan, checks)
        null_rates = _null_rates(scan.row_count, scan.non_null)
        findings = _Findings()
        if schema is not None:
            _check_schema(scan, schema, findings, fails=fail_on_schema_mismatch, allow_extra=allow_extra_columns)
        if fail_on_null_rate_exceeds is not None:
            _check_null_rates(scan, scan.non_null, null_rates, fail_on_null_rate_exceeds, findings)
        _check_rules(scan, ref.uri, checks, values, findings, others={n: r.uri for n, r in readable.items()})
        _beside_schema_issues(findings)
    finally:
        con.close()
    return StageResult(
        stage="validate",
        status="fail" if findings.issues else "pass",
        datasets={dataset: ref},
        issues=findings.issues,
        warnings=findings.warnings,
        metrics=_metrics(scan, null_rates, findings, len(quality_rules), ref.uri, others=readable),
        duration_s=round(time.monotonic() - started, 3),
        started_at=started_at,
    )


def referenced_datasets(validation: StageResult) -> dict[str, DatasetRef]:
    """The other staged datasets a validation's rules read (``in_dataset``, ``sql``), by name: pass them
    as ``others`` to validate its rows again."""
    found = validation.metrics.get("referenced_datasets") or {}
    return {name: DatasetRef.model_validate(ref) for name, ref in found.items()}


def _readable_others(
    dataset: str, uri: str, others: Mapping[str, DatasetRef] | None, rules: Sequence[QualityRule]
) -> dict[str, DatasetRef]:
    """The other datasets the rules may read: all of them when a rule reads other datasets, else none.

    They are read where the data is: a warehouse staging table's rules read the run's other staging
    tables, staged Parquet's the other Parquet (an ``in_dataset`` across the two is refused).
    """

    others = {name: ref for name, ref in (others or {}).items() if name not in (dataset, "data")}
    for name, ref in others.items():
        if not isinstance(ref, DatasetRef):
            raise TypeError(f"others[{name!r}] must be a DatasetRef, got {type(ref).__name__}")
    for rule in rules:
        if rule.rule == "in_dataset" and rule.dataset not in others:
            held = ", ".join(sorted(others)) or "none"
            raise ValueError(
                f"rule {rule.label}: no other staged dataset named {rule.dataset!r} reaches this validation "
                f"(it has: {held}); pass the task that stages it in upstream="
            )
        if rule.rule == "in_dataset" and not _readable_beside(uri, others[str(rule.dataset)].uri):
            raise ValueError(_mixed(rule, dataset, uri, others[str(rule.dataset)].uri))
    if not any(rule.rule in ("in_dataset", "sql") for rule in rules):
        return {}
    return {name: ref for name, ref in others.items() if _readable_beside(uri, ref.uri)}


def _readable_beside(uri: str, other: str) -> bool:
    """Whether a rule on ``uri`` can read ``other`` where it is: both Parquet, or both tables of one warehouse."""
    from airflow_agent_provider.engines.warehouse_sql import same_warehouse
    from airflow_agent_provider.engines.warehouse_staging import is_table_uri

    if is_table_uri(uri) != is_table_uri(other):
        return False
    return not is_table_uri(uri) or same_warehouse(uri, other)


def _mixed(rule: QualityRule, dataset: str, uri: str, other: str) -> str:
    from airflow_agent_provider.engines.warehouse_staging import is_table_uri

    where = {True: "a warehouse staging table", False: "staged Parquet"}
    if is_table_uri(uri) and is_table_uri(other):
        return (
            f"rule {rule.label}: in_dataset compares {dataset} ({uri}) with {rule.dataset} ({other}), a staging "
            "table in another warehouse; stage both with the same staging_conn_id"
        )
    return (
        f"rule {rule.label}: in_dataset compares {dataset} ({where[is_table_uri(uri)]}, {uri}) with "
        f"{rule.dataset} ({where[is_table_uri(other)]}, {other}); both must be staged the same way: stage both "
        "with the same staging_conn_id (warehouse-native) or both as Parquet (no staging_conn_id)"
    )


def _other_views(con: Any, others: Mapping[str, DatasetRef]) -> dict[str, dict[str, str]]:
    """A temporary view of each other dataset, named after it; name -> column types."""
    from airflow_agent_provider.engines.warehouse_sql import WarehouseCursor, add_views

    if isinstance(con, WarehouseCursor):
        return add_views(con, {name: ref.uri for name, ref in others.items()})
    views = {}
    for name, ref in others.items():
        scan = f"read_parquet({file_list(part_files(ref.uri))}, union_by_name = true)"
        con.execute(f"CREATE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {scan}")
        views[name] = columns_of(con, quote_ident(name))
    return views


def _open(ref: DatasetRef) -> tuple[Any, dict[str, str], dict[str, Any]]:
    """A connection with the dataset as the view ``data``, its column types and what its footers prove.

    A warehouse staging table (``postgres://...``) is read where it is, through a session that speaks
    the DuckDB connection's API (``engines.warehouse_sql``): the same rules, one aggregate query. A table
    a database crash emptied since it was staged is refused (it would pass every rule with no rows).
    """
    from airflow_agent_provider.engines import warehouse_staging as ws

    uri = ref.uri
    if ws.is_table_uri(uri):
        from airflow_agent_provider.engines.warehouse_sql import open_data_view

        cursor, types = open_data_view(uri)
        try:
            ws.check_intact(cursor._conn, ws.StagedTable.parse(uri), ref)
        except BaseException:
            cursor.close()
            raise
        return cursor, types, {}
    con = shared_cursor()  # a cursor of its own (its temp view ``data``); a new DuckDB costs 15-50 ms
    try:
        files = part_files(uri)
        con.execute(f"CREATE TEMP VIEW data AS SELECT * FROM read_parquet({file_list(files)}, union_by_name = true)")
        types = columns_of(con, "data")
        return con, types, dict(footer_stats(con, files, types))
    except BaseException:
        con.close()
        raise


def _metrics(
    scan: Scan,
    null_rates: Mapping[str, float],
    findings: _Findings,
    rules: int,
    uri: str,
    *,
    others: Mapping[str, DatasetRef],
) -> dict[str, Any]:
    referenced = {"referenced_datasets": {n: r.model_dump(mode="json") for n, r in others.items()}} if others else {}
    return {
        "row_count": scan.row_count,
        "columns": {name: logical_type(t) for name, t in scan.types.items()},
        "null_rates": {name: round(rate, 6) for name, rate in null_rates.items()},
        "null_counts": {name: scan.row_count - present for name, present in scan.non_null.items()},
        "rules_checked": rules,
        "rules_failed": findings.rules_failed,
        "schema_match": findings.schema_match,
        "data_location": uri,
        **referenced,
    }


def _check_arguments(
    ref: Any,
    expected_schema: Mapping[str, str] | None,
    rules: Sequence[Any],
    null_threshold: float | None,
    sample_size: int,
) -> dict[str, str] | None:
    """Raise for arguments no data could satisfy; return the expected schema as a plain dict."""
    if not isinstance(ref, DatasetRef):
        raise TypeError(f"ref must be a DatasetRef (from an upstream stage result), got {type(ref).__name__}")
    for rule in rules:
        _check_rule_argument(rule)
    if null_threshold is not None and not 0 <= null_threshold <= 1:
        raise ValueError(f"fail_on_null_rate_exceeds must be a share between 0 and 1, got {null_threshold!r}")
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 0:
        raise ValueError(f"sample_size must be a non-negative integer, got {sample_size!r}")
    if expected_schema is None:
        return None
    if not isinstance(expected_schema, Mapping):
        raise TypeError(f"expected_schema must map column names to types, got {type(expected_schema).__name__}")
    for column, kind in expected_schema.items():
        if kind not in LOGICAL_TYPES:
            raise ValueError(
                f"expected_schema column {column!r} has unknown type {kind!r}; use one of {', '.join(LOGICAL_TYPES)}"
            )
    return dict(expected_schema)


def _check_rule_argument(rule: Any) -> None:
    if not isinstance(rule, QualityRule):
        raise TypeError(f"quality rules must be QualityRule (use contracts.parse_quality_rules), got {rule!r}")
    if rule.rule == "row_count_between":
        for bound in (rule.min, rule.max):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
                raise ValueError(f"rule {rule.label}: row count bounds must be numbers, got {bound!r}")


def _null_rates(row_count: int, non_null: Mapping[str, int]) -> dict[str, float]:
    if not row_count:
        return dict.fromkeys(non_null, 0.0)
    return {column: (row_count - n) / row_count for column, n in non_null.items()}


def _check_null_rates(
    scan: Scan, non_null: Mapping[str, int], rates: Mapping[str, float], threshold: float, findings: _Findings
) -> None:
    for column, rate in rates.items():
        if rate <= threshold:
            continue
        nulls = scan.row_count - non_null[column]
        findings.add(
            Issue(
                type="null_rate_exceeded",
                dataset=scan.dataset,
                column=column,
                threshold=threshold,
                actual=round(rate, 6),
                affected_rows=nulls,
                message=(
                    f"{scan.where(column)}: {rate:.1%} nulls ({nulls} of {scan.row_count} rows), "
                    f"over the {threshold:.1%} threshold"
                ),
            )
        )


MAX_NAMED_EXTRA = 10  # unexpected columns named in the warning; the rest are counted


def _check_schema(
    scan: Scan, expected: Mapping[str, str], findings: _Findings, *, fails: bool, allow_extra: bool = False
) -> None:
    """Missing and mistyped columns are schema issues; unexpected columns one warning (none when allowed)."""
    for column, want in expected.items():
        issue = _column_schema_issue(scan, column, want)
        if issue is not None:
            findings.schema_match = False
            findings.add(issue, fails=fails)
    extra = {c: f"({logical_type(t) or 'null'})" for c, t in scan.types.items() if c not in expected}
    if extra and not allow_extra:
        named = ", ".join(f"{c} {kind}" for c, kind in list(extra.items())[:MAX_NAMED_EXTRA]) + (
            f" and {len(extra) - MAX_NAMED_EXTRA} more" if len(extra) > MAX_NAMED_EXTRA else ""
        )
        first, kind = next(iter(extra.items()))
        where = scan.where(first) if len(extra) == 1 else f"{scan.dataset}"
        label = "unexpected column" if len(extra) == 1 else f"{len(extra)} unexpected columns"
        detail = kind if len(extra) == 1 else named
        findings.warnings.append(
            f"{where}: {label} {detail}, not in expected_schema (allow_extra_columns=True allows them)"
        )


def _column_schema_issue(scan: Scan, column: str, want: str) -> Issue | None:
    if column not in scan.types:
        return Issue(
            type="missing_column",
            dataset=scan.dataset,
            column=column,
            expected=want,
            found=None,
            message=f"{scan.where(column)}: expected column ({want}) is missing",
        )
    found = logical_type(scan.types[column])
    if found is None or found == want or (want, found) == ("float", "integer"):
        return None
    return _mismatch(scan, column, want, found)


def _unreadable(col: str, want: str) -> str:
    """SQL true for a non-null value that cannot be read as ``want`` (integers must not lose a fraction)."""
    target = DUCKDB_TYPES[want]
    if want == "integer":
        return f"TRY_CAST({col} AS BIGINT) IS NULL OR TRY_CAST({col} AS DOUBLE) <> TRY_CAST({col} AS BIGINT)"
    return f"TRY_CAST({col} AS {target}) IS NULL"


def _mismatch(scan: Scan, column: str, want: str, found: str) -> Issue:
    import duckdb

    col = quote_ident(column)
    condition = f"{col} IS NOT NULL AND ({_unreadable(col, want)})"
    try:
        bad, present = scan.one(f"SELECT count(*) FILTER (WHERE {condition}), count({col}) FROM data")
        sample = scan.sample([column], condition) if bad else []
    except duckdb.Error:  # no cast exists between the two types at all
        (present,) = scan.one(f"SELECT count({col}) FROM data")
        bad, sample = present, []
    if bad:
        detail = f"{bad} of {present} non-null values cannot be read as {want}" + (
            f", e.g. {show(sample[0])}" if sample else ""
        )
    else:
        detail = f"all {present} non-null values are castable to {want} (a cast fixes it)"
    return Issue(
        type="schema_mismatch",
        dataset=scan.dataset,
        column=column,
        expected=want,
        found=found,
        affected_rows=bad,
        sample=sample,
        message=f"{scan.where(column)}: expected {want}, found {found}; {detail}",
    )


def _beside_schema_issues(findings: _Findings) -> None:
    """A rule that could not run on a mistyped column follows from its schema issue: say so, and list it next to it."""
    schema = {issue.column: issue for issue in findings.issues if issue.type == "schema_mismatch"}
    follow: dict[str, list[Issue]] = {}
    for issue in findings.issues:
        if issue.type == "rule_error" and issue.column in schema:
            cause = schema[issue.column]
            issue.message = (
                f"{issue.message} (it follows from the schema issue on this column: expected {cause.expected}, "
                f"found {cause.found})"
            )
            follow.setdefault(str(issue.column), []).append(issue)
    if not follow:
        return
    moved = {id(issue) for issues in follow.values() for issue in issues}
    ordered: list[Issue] = []
    for issue in findings.issues:
        if id(issue) in moved:
            continue
        ordered.append(issue)
        if issue.type == "schema_mismatch":
            ordered.extend(follow.get(str(issue.column), []))
    findings.issues = ordered


def _check_rules(
    scan: Scan, uri: str, checks: list[Check], values: list[Values], findings: _Findings, *, others: Mapping[str, str]
) -> None:
    """Each rule in its declared order; custom SQL predicates counted in a sandbox without file access."""
    locked = sandbox(uri, scan.con, others) if any(check.sandboxed for check in checks) else None
    try:
        for check, found in zip(checks, values, strict=True):
            if check.sandboxed and locked is not None:
                where = replace(scan, con=locked)
                _record(finish_check(where, check, alone(where, check)), findings)
            else:
                _record(finish_check(scan, check, found), findings)
    finally:
        if locked is not None:
            locked.close()


def _record(issue: Issue | None, findings: _Findings) -> None:
    if issue is not None:
        findings.rules_failed += 1
        findings.add(issue)
