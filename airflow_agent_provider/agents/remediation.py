"""The schema-remediation loop: Claude proposes a plan, our code applies it, validation judges it.

Each iteration applies one plan to the output of the previous one, stages the result under the
caller's scope and validates it again with the same schema and rules. The loop stops when the data
passes, after ``max_iterations``, or when the model cannot answer; every plan and what validation
found after it is recorded, and fed back to the model so a failed plan is not repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.fixes import propose_fix
from airflow_agent_provider.agents.prompts import clip
from airflow_agent_provider.contracts import DatasetRef, FixPlan, QualityRule, StageResult, Usage
from airflow_agent_provider.exceptions import FixPlanNotApplicable, ModelCallError

MAX_ISSUES_RECORDED = 5


@dataclass
class RemediationOutcome:
    """Where the loop ended: the fixed dataset when it passed, and the record of every iteration."""

    passed: bool
    validation: StageResult
    fixed: DatasetRef | None = None
    quarantined: dict[str, DatasetRef] = field(default_factory=dict)
    iterations: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stopped_because: str | None = None

    @property
    def remaining_issues(self) -> list[str]:
        return [issue.summary() for issue in self.validation.issues]


@dataclass(frozen=True)
class RemediationRequest:
    """What to fix and how to judge it.

    :param dataset: the dataset's name (issues and the fixed result carry it).
    :param ref: the staged data as validation saw it.
    :param validation: the failed validation result.
    :param uri_for: dataset name -> staging URI under the caller's scope.
    :param output_dataset: base name of the fixed dataset.
    """

    dataset: str
    ref: DatasetRef
    validation: StageResult
    uri_for: Callable[[str], str]
    output_dataset: str
    expected_schema: Mapping[str, str] | None = None
    quality_rules: Sequence[QualityRule] = ()
    allowed_actions: Sequence[str] | None = None
    fail_on_null_rate_exceeds: float | None = None
    reference_time: datetime | None = None


def remediate(claude: Claude, request: RemediationRequest, *, max_iterations: int = 3) -> RemediationOutcome:
    """Run the loop (see the module docstring); never raises for the model or a plan that does not fit."""
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    outcome = RemediationOutcome(passed=request.validation.passed, validation=request.validation)
    if outcome.passed:
        outcome.fixed = request.ref
        return outcome
    ref = request.ref
    for number in range(1, max_iterations + 1):
        try:
            plan, usage = propose_fix(
                claude, outcome.validation, expected_schema=request.expected_schema,
                quality_rules=request.quality_rules, allowed_actions=request.allowed_actions,
                history=outcome.iterations,
            )  # fmt: skip
        except ModelCallError as err:
            outcome.usage = outcome.usage + (err.usage or Usage())
            outcome.stopped_because = f"the model gave no plan in iteration {number}: {err.reason}: {err}"
            return outcome
        outcome.usage = outcome.usage + usage
        ref = _iterate(request, number, plan, ref, outcome)
        if outcome.passed:
            outcome.fixed = ref
            return outcome
    outcome.stopped_because = f"still failing after {max_iterations} iteration(s)"
    return outcome


def _iterate(
    request: RemediationRequest, number: int, plan: FixPlan, ref: DatasetRef, outcome: RemediationOutcome
) -> DatasetRef:
    """Apply and re-validate one plan; record it; return the data the next iteration starts from."""
    from airflow_agent_provider.engines.remediate import apply_fix_plan

    record: dict[str, Any] = {"iteration": number, "plan": plan.model_dump(mode="json")}
    try:
        applied, quarantined = apply_fix_plan(
            ref,
            plan,
            output_uri=request.uri_for(f"{request.output_dataset}_fix{number}"),
            quarantine_uri=lambda target: request.uri_for(f"{target}_fix{number}"),
        )
    except FixPlanNotApplicable as err:
        record.update(outcome="plan_failed", error=str(clip(str(err), 300)), issues=_issues(outcome.validation))
        outcome.iterations.append(record)
        return ref
    fixed = next(r for n, r in applied.datasets.items() if n not in quarantined)
    outcome.validation = _revalidate(request, fixed)
    outcome.passed = outcome.validation.passed
    for target, qref in quarantined.items():
        outcome.quarantined[target if target not in outcome.quarantined else f"{target}_{number}"] = qref
    record.update(
        outcome="pass" if outcome.passed else "fail",
        applied=_applied(applied.metrics),
        issues=_issues(outcome.validation),
    )
    outcome.iterations.append(record)
    return fixed


def _revalidate(request: RemediationRequest, ref: DatasetRef) -> StageResult:
    from airflow_agent_provider.engines.validate import referenced_datasets, validate_dataset

    return validate_dataset(
        ref,
        dataset=request.dataset,
        expected_schema=request.expected_schema,
        quality_rules=request.quality_rules,
        fail_on_null_rate_exceeds=request.fail_on_null_rate_exceeds,
        reference_time=request.reference_time,
        others=referenced_datasets(request.validation),
    )


def _issues(result: StageResult) -> list[str]:
    return [str(clip(issue.summary(), 200)) for issue in result.issues[:MAX_ISSUES_RECORDED]]


def _applied(metrics: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("rows_before", "rows_after", "rows_dropped", "rows_quarantined", "cast_failures")
    return {key: metrics[key] for key in keys if key in metrics}
