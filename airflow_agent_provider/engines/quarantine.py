"""Quarantine the rows a failed validation found: a plan built from its issues, no model involved.

Each issue that names rows becomes ``quarantine_rows`` actions of a ``FixPlan`` (the vocabulary of
schema remediation), applied by ``engines.remediate.apply_fix_plan``; the clean rows are then
validated again with the same schema and rules.

=====================================  ============================================================
issue (rule)                           rows quarantined
=====================================  ============================================================
``not_null_violation`` (not_null)      ``is_null``
``value_not_in_list`` (in_list)        ``not_in_list`` the rule's values
``out_of_range`` (range)               ``lt`` the minimum, ``gt`` the maximum
``regex_mismatch`` (regex)             ``regex_mismatch`` the rule's pattern
``schema_mismatch``                    ``not_castable`` to the expected type; the column is then
                                       cast, so the clean rows match the schema
=====================================  ============================================================

The rule's own arguments (from ``quality_rules``, matched by the issue's rule label) are used, never
the issue's bounded copy of them. Schema actions come first, so a rule on a mistyped column compares
values of the expected type. Issues no row rule expresses (duplicates, row counts, stale values, SQL
predicates, values missing from another dataset (``in_dataset``), null rates, missing columns, an integer
column holding fractions) are returned as
unhandled and left in the data; the re-validation says whether they still stand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow_agent_provider.contracts import (
    CastColumn,
    DatasetRef,
    FixAction,
    FixPlan,
    Issue,
    QualityRule,
    QuarantineRows,
    RowRule,
    StageResult,
)
from airflow_agent_provider.contracts.types import LOGICAL_TYPES
from airflow_agent_provider.engines.remediate import apply_fix_plan
from airflow_agent_provider.engines.validate import referenced_datasets, validate_dataset

MAX_ACTIONS = 20  # FixPlan's own limit
QUARANTINE_SUFFIX = "_quarantine"
_ISSUE_RULES = {
    "not_null_violation": "not_null",
    "value_not_in_list": "in_list",
    "out_of_range": "range",
    "regex_mismatch": "regex",
}


def quarantine_name(dataset: str) -> str:
    """The name of the quarantined rows of ``dataset``: ``<dataset>_quarantine``."""
    return f"{dataset}{QUARANTINE_SUFFIX}"


def quarantine_plan(
    validation: StageResult,
    quality_rules: Sequence[QualityRule],
    *,
    dataset: str | None = None,
    target: str | None = None,
) -> tuple[FixPlan | None, list[Issue]]:
    """The quarantine plan for a failed validation, and the issues it cannot express.

    :param validation: the failed validation result of one dataset.
    :param quality_rules: the rules that validation ran (``contracts.parse_quality_rules``).
    :param dataset: the dataset the issues are about (default: the validation's only dataset).
    :param target: where quarantined rows go (default ``<dataset>_quarantine``).
    :returns: ``(plan, unhandled)``; ``plan`` is None when no issue names quarantinable rows.
    """
    name = _dataset_name(validation, dataset)
    target = target or quarantine_name(name)
    rules = {rule.label: rule for rule in quality_rules}
    schema: list[FixAction] = []
    rows: list[FixAction] = []
    unhandled: list[Issue] = []
    for issue in validation.issues:
        actions = _actions(issue, name, rules, target)
        room = MAX_ACTIONS - len(schema) - len(rows)
        if not actions or len(actions) > room:
            unhandled.append(issue)
        else:
            (schema if issue.type == "schema_mismatch" else rows).extend(actions)
    if not schema and not rows:
        return None, unhandled
    rationale = f"quarantine the rows of {name!r} that {len(validation.issues) - len(unhandled)} issue(s) name"
    return FixPlan(actions=[*schema, *rows], rationale=rationale), unhandled


def _dataset_name(validation: StageResult, dataset: str | None) -> str:
    if dataset is not None:
        if dataset not in validation.datasets:
            raise ValueError(f"validation {validation.task_id!r} has no dataset {dataset!r}")
        return dataset
    if len(validation.datasets) != 1:
        known = ", ".join(sorted(validation.datasets)) or "none"
        raise ValueError(f"validation {validation.task_id!r} holds datasets {known}; name the one to quarantine")
    return next(iter(validation.datasets))


def _actions(issue: Issue, dataset: str, rules: Mapping[str, QualityRule], target: str) -> list[FixAction]:
    """The actions that take the rows of ``issue`` out; [] when no row rule expresses it."""
    if issue.dataset not in (None, dataset) or not issue.column:
        return []
    try:
        if issue.type == "schema_mismatch":
            return _schema_actions(issue, issue.column, target)
        rule = rules.get(issue.rule or "")
        if rule is None or _ISSUE_RULES.get(issue.type) != rule.rule or rule.column != issue.column:
            return []
        return [QuarantineRows(action="quarantine_rows", rule=row, target=target) for row in _row_rules(rule)]
    except ValueError:  # a value the row-rule contract cannot carry (a nested list, a date object, ...)
        return []


def _schema_actions(issue: Issue, column: str, target: str) -> list[FixAction]:
    """Quarantine what cannot be read as the expected type, then cast the rest to it."""
    want = issue.expected
    if want not in LOGICAL_TYPES or (want, issue.found) == ("integer", "float"):
        return []  # a cast to integer would round fractions instead of quarantining them
    unreadable = RowRule(column=column, op="not_castable", to_type=want)
    return [
        QuarantineRows(action="quarantine_rows", rule=unreadable, target=target),
        CastColumn(action="cast_column", column=column, to_type=want),
    ]


def _row_rules(rule: QualityRule) -> list[RowRule]:
    column = str(rule.column)
    if rule.rule == "not_null":
        return [RowRule(column=column, op="is_null")]
    if rule.rule == "in_list":
        allowed = [value for value in rule.values or [] if value is not None]
        return [RowRule(column=column, op="not_in_list", value=allowed)] if allowed else []
    if rule.rule == "regex":
        return [RowRule(column=column, op="regex_mismatch", value=rule.pattern)]
    bounds = (("lt", rule.min), ("gt", rule.max))
    return [RowRule(column=column, op=op, value=value) for op, value in bounds if value is not None]


def quarantine_dataset(
    validation: StageResult,
    *,
    uri_for: Callable[[str], str],
    dataset: str | None = None,
    quality_rules: Sequence[QualityRule] = (),
    expected_schema: Mapping[str, str] | None = None,
    fail_on_schema_mismatch: bool = True,
    fail_on_null_rate_exceeds: float | None = None,
    reference_time: datetime | None = None,
    allow_extra_columns: bool = False,
) -> StageResult:
    """Split a failed dataset into clean rows and quarantined rows, and validate the clean rows again.

    A passing validation is returned as it is (nothing staged). Otherwise the clean rows are staged
    under the dataset's name and the quarantined ones, as they arrived, under ``<dataset>_quarantine``.

    :param validation: the validation result of the dataset.
    :param uri_for: dataset name -> staging URI ending in that name (e.g. ``RunScope.uri_factory``).
    :param dataset: which dataset of the validation (default: its only one).
    :param quality_rules: the rules the validation ran; the plan reads their arguments, the
        re-validation runs them again.
    :param expected_schema: the schema the validation checked (re-validated likewise).
    :param fail_on_schema_mismatch: as for the validation.
    :param fail_on_null_rate_exceeds: as for the validation.
    :param reference_time: the end of the data interval, for ``within_last_n_days``.
    :param allow_extra_columns: as for the validation.
    :returns: a ``remediate`` stage result: status ``pass`` when the clean rows pass, else ``fail`` with
        what still fails; metrics ``rows_before``, ``rows_after``, ``rows_quarantined``,
        ``quarantined_by`` (per row rule), ``unhandled_issues`` and the ``plan``.
    :raises FixPlanNotApplicable: the plan does not fit the data (a column or value the data lacks).
    """
    started, clock = datetime.now(timezone.utc), time.monotonic()
    name = _dataset_name(validation, dataset)
    ref = validation.datasets[name]
    if validation.passed:
        return _passed_through(name, ref, started, time.monotonic() - clock)
    plan, unhandled = quarantine_plan(validation, quality_rules, dataset=name)
    clean, quarantined, counts = _split(name, ref, plan, uri_for)
    recheck = validate_dataset(
        clean, dataset=name, expected_schema=expected_schema, quality_rules=quality_rules,
        fail_on_schema_mismatch=fail_on_schema_mismatch, fail_on_null_rate_exceeds=fail_on_null_rate_exceeds,
        reference_time=reference_time, others=referenced_datasets(validation),
        allow_extra_columns=allow_extra_columns,
    )  # fmt: skip
    return StageResult(
        stage="quarantine",
        status="pass" if recheck.passed else "fail",
        datasets={name: clean, **quarantined},
        issues=recheck.issues,
        metrics=_metrics(ref, clean, quarantined, counts=counts, plan=plan, unhandled=unhandled),
        warnings=[*recheck.warnings, *(f"not quarantinable: {issue.summary()}" for issue in unhandled)],
        duration_s=round(time.monotonic() - clock, 3),
        started_at=started,
    )


def _split(
    name: str, ref: DatasetRef, plan: FixPlan | None, uri_for: Callable[[str], str]
) -> tuple[DatasetRef, dict[str, DatasetRef], dict[str, int]]:
    """(clean rows, quarantined rows by name, rows per quarantine action); the input itself without a plan."""
    if plan is None:
        return ref, {}, {}
    applied, quarantined = apply_fix_plan(ref, plan, output_uri=uri_for(name), quarantine_uri=uri_for, name=name)
    return applied.datasets[name], quarantined, _counts(plan, applied.metrics)


def _passed_through(name: str, ref: DatasetRef, started: datetime, duration: float) -> StageResult:
    metrics = _metrics(ref, ref, {}, counts={}, plan=None, unhandled=[])
    return StageResult(
        stage="quarantine", status="pass", datasets={name: ref}, metrics=metrics, duration_s=round(duration, 3),
        started_at=started,
    )  # fmt: skip


def _counts(plan: FixPlan, applied: Mapping[str, Any]) -> dict[str, int]:
    """Rows taken per quarantine action, keyed ``<column> <op>`` (a row counts under its first rule)."""
    counts: dict[str, int] = {}
    for action, done in zip(plan.actions, applied["actions_applied"], strict=True):
        if isinstance(action, QuarantineRows):
            counts[f"{action.rule.column} {action.rule.op}"] = int(done["rows"] or 0)
    return counts


def _metrics(
    before: DatasetRef,
    clean: DatasetRef,
    quarantined: Mapping[str, DatasetRef],
    *,
    counts: Mapping[str, int],
    plan: FixPlan | None,
    unhandled: Sequence[Issue],
) -> dict[str, Any]:
    return {
        "rows_before": before.row_count,
        "rows_after": clean.row_count,
        "rows_quarantined": sum(ref.row_count for ref in quarantined.values()),
        "quarantined_by": dict(counts),
        "quarantine_datasets": sorted(quarantined),
        "unhandled_issues": [issue.summary() for issue in unhandled],
        "plan": plan.model_dump(mode="json") if plan is not None else None,
    }
