"""SchemaRemediationOperator: Claude proposes fix plans, our code applies them, validation judges."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.operators.base import ClaudeStageOperator
from airflow_agent_provider.operators.errors import SchemaRemediationFailed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_agent_provider.agents.remediation import RemediationOutcome, RemediationRequest
    from airflow_agent_provider.contracts import DatasetRef, StageResult

ITERATIONS_KEY = "iterations"


class SchemaRemediationOperator(ClaudeStageOperator):
    """Fix a dataset that failed validation: up to ``max_iterations`` rounds of plan, apply, re-validate.

    Plans use a closed vocabulary (rename_column, cast_column, fill_default, drop_rows,
    quarantine_rows) applied by the provider's DuckDB engine to the staged data; the model never
    touches data. A passing validation returns at once with no model call. Each round's plan and
    result are recorded in ``metrics.iterations`` (and XCom key ``iterations``, also on failure).

    :param validation: the failed validation result (templated; ``validate_task.output``).
    :param expected_schema: ``{column: logical type}`` the fixed data must match.
    :param quality_rules: the quality rules the fixed data must pass (as for ``ValidateOperator``).
    :param dataset: which dataset of the validation to fix (needed when it holds several).
    :param max_iterations: rounds before giving up with ``SchemaRemediationFailed``.
    :param allowed_actions: the actions Claude may use (default all five).
    :param output_dataset: the fixed dataset's name (default: the input's name).
    :param quarantine_conn_id: a SQLite/PostgreSQL connection to insert quarantined rows into, one
        table per quarantine target; without it quarantined rows stay staged (in the result's datasets).
    :param fail_on_null_rate_exceeds: the null-rate threshold of the re-validation, as in validation.
    :param staging_root: where the fixed data is staged (default: the provider's staging root).

    Plans are asked for with the Claude settings of ``ClaudeStageOperator`` (``model``,
    ``claude_conn_id``, ``timeout_s`` per plan, ``max_cost_usd``, ``max_model_calls``).
    """

    template_fields: Collection[str] = (
        "validation",
        "expected_schema",
        "quality_rules",
        "dataset",
        "output_dataset",
        "model",
        "claude_conn_id",
        "quarantine_conn_id",
        "staging_root",
    )
    ui_color = "#e8d8f4"
    stage = "remediate"

    def __init__(
        self,
        *,
        validation: Any,
        expected_schema: Mapping[str, str],
        quality_rules: Sequence[Mapping[str, Any]] | None = None,
        dataset: str | None = None,
        max_iterations: int = 3,
        allowed_actions: Sequence[str] | None = None,
        output_dataset: str | None = None,
        quarantine_conn_id: str | None = None,
        fail_on_null_rate_exceeds: float | None = None,
        staging_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.validation = validation
        self.expected_schema = expected_schema
        self.quality_rules = quality_rules
        self.dataset = dataset
        self.max_iterations = max_iterations
        self.allowed_actions = allowed_actions
        self.output_dataset = output_dataset
        self.quarantine_conn_id = quarantine_conn_id
        self.fail_on_null_rate_exceeds = fail_on_null_rate_exceeds
        self.staging_root = staging_root

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_agent_provider.agents.remediation import remediate
        from airflow_agent_provider.operators.errors import stage_errors
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        started, clock = datetime.now(timezone.utc), time.monotonic()
        with stage_errors(self.task_id):
            request = self._request(context)
            outcome = remediate(self.claude(context), request, max_iterations=self.max_iterations)
        context["ti"].xcom_push(key=ITERATIONS_KEY, value=outcome.iterations)
        if not outcome.passed or outcome.fixed is None:
            self.keep_for_lineage(context, _failure_record(outcome))
            raise self._failure(request.dataset, outcome)
        loaded = self._load_quarantine(outcome.quarantined, context)
        result = self._result(request.output_dataset, outcome, loaded, started, time.monotonic() - clock)
        self.log.info(
            "Remediated %s in %d iteration(s): %s row(s) kept, %s model call(s), $%.4f",
            request.dataset, len(outcome.iterations), outcome.fixed.row_count, outcome.usage.model_calls,
            outcome.usage.cost_usd,
        )  # fmt: skip
        return self.keep_for_lineage(context, result.model_dump(mode="json"))

    def _request(self, context: Context) -> RemediationRequest:
        from functools import partial

        from airflow_agent_provider.agents.fixes import check_allowed_actions
        from airflow_agent_provider.agents.remediation import RemediationRequest
        from airflow_agent_provider.contracts import parse_quality_rules, parse_upstream
        from airflow_agent_provider.operators import _common

        name, validation = _common.find_dataset(parse_upstream(self.validation), self.dataset)
        check_allowed_actions(self.allowed_actions)
        return RemediationRequest(
            dataset=name,
            ref=validation.datasets[name],
            validation=validation,
            uri_for=partial(_common.output_uri, _common.run_scope(context), self.staging_root, validation.datasets),
            output_dataset=self.output_dataset or name,
            expected_schema=dict(self.expected_schema or {}),
            quality_rules=parse_quality_rules(self.quality_rules),
            allowed_actions=self.allowed_actions,
            fail_on_null_rate_exceeds=self.fail_on_null_rate_exceeds,
            reference_time=_common.data_interval(context)[1],
        )

    def _failure(self, dataset: str, outcome: RemediationOutcome) -> SchemaRemediationFailed:
        remaining = outcome.remaining_issues
        message = (
            f"{self.task_id}: schema remediation of {dataset!r} failed ({outcome.stopped_because}). "
            f"Remaining issues: {'; '.join(remaining[:5]) or 'none recorded'}. "
            f"Iterations: {json.dumps(outcome.iterations, default=str)}"
        )
        return SchemaRemediationFailed(message, iterations=outcome.iterations, remaining_issues=remaining)

    def _load_quarantine(self, quarantined: Mapping[str, DatasetRef], context: Context) -> dict[str, int]:
        """Insert quarantined rows into ``quarantine_conn_id`` (table = target); {} when it is not set."""
        if not self.quarantine_conn_id or not quarantined:
            return {}
        from airflow_agent_provider.operators._common import load_quarantined

        loaded = load_quarantined(self.quarantine_conn_id, quarantined, context=context, staging_root=self.staging_root)
        self.log.info("Quarantined rows into %s: %s", self.quarantine_conn_id, loaded)
        return loaded

    def _result(
        self, output: str, outcome: RemediationOutcome, loaded: dict[str, int], started: datetime, duration: float
    ) -> StageResult:
        from airflow_agent_provider.contracts import StageResult

        assert outcome.fixed is not None
        return StageResult(
            stage="remediate",
            status="pass",
            task_id=self.task_id,
            datasets={output: outcome.fixed, **outcome.quarantined},
            metrics={
                "iterations": outcome.iterations,
                "iteration_count": len(outcome.iterations),
                "rows_quarantined": {name: ref.row_count for name, ref in outcome.quarantined.items()},
                "quarantine_loaded": loaded,
            },
            usage=outcome.usage,
            duration_s=round(duration, 3),
            started_at=started,
            warnings=outcome.validation.warnings,
        )


def _failure_record(outcome: RemediationOutcome) -> dict[str, Any]:
    """What a failed remediation keeps for its lineage: every iteration, the usage, why it stopped."""
    return {
        "iterations": outcome.iterations,
        "usage": outcome.usage.model_dump(),
        "stopped_because": outcome.stopped_because,
    }
