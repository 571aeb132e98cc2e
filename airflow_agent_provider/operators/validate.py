"""ValidateOperator: check a staged dataset against a schema and quality rules; never moves data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_agent_provider.exceptions import ValidationFailed
from airflow_agent_provider.operators.base import ClaudeStageOperator
from airflow_agent_provider.operators.errors import StageFailed, stage_errors

if TYPE_CHECKING:
    from airflow.sdk import Context


class ValidateOperator(ClaudeStageOperator):
    """Validate one staged dataset of the upstream stage; a failing validation is a result, not an error.

    Returns the ``validate`` stage result: status ``pass`` or ``fail``, the ``issues`` found (type,
    column, expected, found, affected rows, a bounded sample), and metrics (row count, null rates,
    ``schema_match``). The dataset reference is passed on unchanged, so a branch or a transform can
    use this task's output as its upstream. A dataset staged as a warehouse table
    (``ExtractOperator(staging_conn_id=...)``) is checked inside the warehouse, by the same rules.

    :param upstream: the upstream stage result(s), e.g. ``extract.output``. Templated.
    :param dataset: the dataset to check; may be omitted when the upstream holds only one. Templated.
    :param expected_schema: column -> logical type (integer, float, string, boolean, date, timestamp).
        Templated.
    :param quality_rules: list of rule dicts ``{column, rule, ...}``: ``not_null``, ``unique``,
        ``in_list`` (``values``), ``in_dataset`` (``dataset``, ``dataset_column``: the values must
        appear in a column of another staged dataset of the run), ``range`` (``min``/``max``),
        ``regex`` (``pattern``), ``within_last_n_days`` (``days``; ``within_last_30_days`` also
        reads), ``row_count_between`` (``min``/``max``) and ``sql`` (``predicate``, a boolean
        expression every row must meet; a subquery may read the other staged datasets by name).
        ``within_last_n_days`` counts back from the end of the run's data interval. The other staged
        datasets are those of ``upstream`` besides ``dataset`` (e.g. ``upstream=extract.output``
        when one extract stages both). Every rule: docs/reference.md. Templated.
    :param allow_extra_columns: columns the data has beyond ``expected_schema`` are fine (a partial
        schema checks only the columns it names); by default they are named in one warning.
    :param fail_on_schema_mismatch: a schema mismatch fails the validation (else it is a warning).
    :param fail_on_null_rate_exceeds: a column whose share of nulls exceeds this (0.05 = 5 %) is an issue.
    :param fail_task_on_failure: fail the task (no retry) when the validation fails; the result is
        still pushed to XCom so the report shows the issues. Off by default: route on the result instead.
    :param diagnose: ask Claude for a diagnosis and recommendation when issues are found, with the
        Claude settings of ``ClaudeStageOperator`` (``model``, ``claude_conn_id``, ``timeout_s``,
        ``max_cost_usd``, ``max_model_calls``).
    """

    template_fields: Sequence[str] = (
        "upstream", "dataset", "expected_schema", "quality_rules", *ClaudeStageOperator.claude_template_fields
    )  # fmt: skip
    template_fields_renderers: ClassVar[dict[str, str]] = {"quality_rules": "json", "expected_schema": "json"}
    ui_color = "#fdebd0"
    stage = "validate"

    def __init__(
        self,
        *,
        upstream: Any,
        dataset: str | None = None,
        expected_schema: dict[str, str] | None = None,
        quality_rules: list[dict[str, Any]] | None = None,
        fail_on_schema_mismatch: bool = True,
        fail_on_null_rate_exceeds: float | None = None,
        fail_task_on_failure: bool = False,
        allow_extra_columns: bool = False,
        diagnose: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.upstream = upstream
        self.dataset = dataset
        self.expected_schema = expected_schema
        self.quality_rules = quality_rules
        self.fail_on_schema_mismatch = fail_on_schema_mismatch
        self.fail_on_null_rate_exceeds = fail_on_null_rate_exceeds
        self.fail_task_on_failure = fail_task_on_failure
        self.allow_extra_columns = allow_extra_columns
        self.diagnose = diagnose

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_agent_provider.contracts import parse_quality_rules, parse_upstream
        from airflow_agent_provider.engines.validate import validate_dataset
        from airflow_agent_provider.operators import _common
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        with stage_errors(self.task_id):
            results = parse_upstream(self.upstream)
            name, holder = _common.find_dataset(results, self.dataset)
            ref = holder.datasets[name]
            result = validate_dataset(
                ref,
                dataset=name,
                expected_schema=self.expected_schema,
                quality_rules=parse_quality_rules(self.quality_rules),
                fail_on_schema_mismatch=self.fail_on_schema_mismatch,
                fail_on_null_rate_exceeds=self.fail_on_null_rate_exceeds,
                reference_time=_common.data_interval(context)[1],
                others={n: r for n, r in _common.all_datasets(results).items() if n != name},
                allow_extra_columns=self.allow_extra_columns,
            )
        result.task_id = self.task_id
        if self.diagnose and not result.passed:
            from airflow_agent_provider.operators._claude import diagnose_result

            result = diagnose_result(self.claude(context), result, self.log)
        self.log.info(
            "Validation of %s: %s (%s rows, %s issue(s))", name, result.status, ref.row_count, len(result.issues)
        )
        output = self.keep_for_lineage(context, result.model_dump(mode="json"))
        if self.fail_task_on_failure and not result.passed:
            context["ti"].xcom_push(key="return_value", value=output)
            summary = "; ".join(issue.summary() for issue in result.issues[:5])
            failure = ValidationFailed(f"validation of {name!r} failed: {summary}")
            raise StageFailed(f"{self.task_id}: {failure}") from failure
        return output
