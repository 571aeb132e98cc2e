"""QuarantineOperator: take the bad rows out of a failed dataset and continue; deterministic, no model call."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_agent_provider.operators.base import StageOperator
from airflow_agent_provider.operators.errors import QuarantineFailed, stage_errors

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_agent_provider.contracts import StageResult


class QuarantineOperator(StageOperator):
    """Quarantine the rows a failed validation found, validate the clean rows again, and go on.

    The plan is built from the validation's issues and the rules' own arguments (``not_null`` ->
    null rows, ``in_list`` -> rows outside the list, ``range`` -> rows below the minimum or above the
    maximum, ``regex`` -> rows that do not match, a castable ``schema_mismatch`` -> rows that do not
    convert, the column then cast) and applied by the provider's DuckDB engine; see
    ``engines.quarantine``. The clean rows are staged under the dataset's name, so a downstream
    ``upstream=[extract.output, quarantine.output]`` reads them instead of the extracted ones; the
    quarantined rows, as they arrived, under ``<dataset>_quarantine``. A passing validation passes
    through untouched.

    The task fails (``QuarantineFailed``, no retry) when the clean rows still fail, or when another
    validation given in ``validation`` failed: nothing that quarantine cannot fix goes downstream.
    The stage result (stage ``quarantine``, status ``pass``/``fail``) is pushed either way, with
    ``metrics`` ``rows_before``, ``rows_after``, ``rows_quarantined``, ``quarantined_by`` (per row rule),
    ``unhandled_issues``, the ``plan``, and ``quarantine_table``/``quarantine_rows_loaded``.

    :param validation: the validation result(s) (templated; ``validate_task.output`` or a list).
    :param dataset: the dataset to quarantine (needed when ``validation`` holds several). Templated.
    :param expected_schema: the schema its validation checked; the clean rows are checked again. Templated.
    :param quality_rules: the rules its validation ran (as for ``ValidateOperator``). Templated.
    :param fail_on_schema_mismatch: as for the validation.
    :param fail_on_null_rate_exceeds: as for the validation.
    :param allow_extra_columns: as for the validation: columns beyond ``expected_schema`` are fine.
    :param quarantine_conn_id: a SQLite/PostgreSQL connection to also write the quarantined rows to
        (only when the clean rows pass); without it they stay staged. Templated.
    :param quarantine_table: the table there (default ``<dataset>_quarantine``). It takes any row: the
        data columns are text (the values as they arrived) plus ``quarantine_rule``, ``quarantine_dag_id``,
        ``quarantine_run_id``, ``quarantine_logical_date``, ``quarantine_data_interval``,
        ``quarantine_task_id`` and ``quarantined_at``; a table of the older typed shape is migrated
        first, keeping its rows (see ``engines.quarantine_table``). Templated.
    :param quarantine_key: the rows' key columns: the rows are upserted by it, so a re-run leaves the
        table as it was; without a key they are appended (a re-run appends them again).
    :param staging_root: where the clean and quarantined rows are staged (default: the provider's). Templated.
    """

    template_fields: Collection[str] = (
        "validation",
        "dataset",
        "expected_schema",
        "quality_rules",
        "quarantine_conn_id",
        "quarantine_table",
        "staging_root",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"quality_rules": "json", "expected_schema": "json"}
    ui_color = "#f9e79f"
    stage = "quarantine"

    def __init__(
        self,
        *,
        validation: Any,
        dataset: str | None = None,
        expected_schema: Mapping[str, str] | None = None,
        quality_rules: Sequence[Mapping[str, Any]] | None = None,
        fail_on_schema_mismatch: bool = True,
        fail_on_null_rate_exceeds: float | None = None,
        allow_extra_columns: bool = False,
        quarantine_conn_id: str | None = None,
        quarantine_table: str | None = None,
        quarantine_key: Sequence[str] | None = None,
        staging_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.validation = validation
        self.dataset = dataset
        self.expected_schema = expected_schema
        self.quality_rules = quality_rules
        self.fail_on_schema_mismatch = fail_on_schema_mismatch
        self.fail_on_null_rate_exceeds = fail_on_null_rate_exceeds
        self.allow_extra_columns = allow_extra_columns
        self.quarantine_conn_id = quarantine_conn_id
        self.quarantine_table = quarantine_table
        self.quarantine_key = quarantine_key
        self.staging_root = staging_root

    def execute(self, context: Context) -> dict[str, Any]:
        from functools import partial

        from airflow_agent_provider.contracts import parse_quality_rules, parse_upstream
        from airflow_agent_provider.engines.quarantine import quarantine_dataset
        from airflow_agent_provider.operators import _common
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        with stage_errors(self.task_id):
            results = parse_upstream(self.validation)
            name, validation = _common.find_dataset(results, self.dataset)
            scope = _common.run_scope(context)  # the clean rows are staged next to the input (table or Parquet)
            result = quarantine_dataset(
                validation, uri_for=partial(_common.output_uri, scope, self.staging_root, validation.datasets),
                dataset=name,
                quality_rules=parse_quality_rules(self.quality_rules), expected_schema=self.expected_schema,
                fail_on_schema_mismatch=self.fail_on_schema_mismatch,
                fail_on_null_rate_exceeds=self.fail_on_null_rate_exceeds,
                reference_time=_common.data_interval(context)[1], allow_extra_columns=self.allow_extra_columns,
            )  # fmt: skip
            result = _with_other_failures(result, [r for r in results if r is not validation])
            if result.passed:
                result.metrics |= self._load_quarantine(name, result, context)
        result.task_id = self.task_id
        metrics = result.metrics
        self.log.info(
            "Quarantined %s of %s row(s) of %s (%s); clean rows: %s",
            metrics["rows_quarantined"], metrics["rows_before"], name, metrics["quarantined_by"] or "nothing",
            result.status,
        )  # fmt: skip
        output = self.keep_for_lineage(context, result.model_dump(mode="json"))
        if not result.passed:
            context["ti"].xcom_push(key="return_value", value=output)
            raise self._failure(name, result)
        return output

    def _load_quarantine(self, name: str, result: StageResult, context: Context) -> dict[str, Any]:
        """Write the quarantined rows to ``quarantine_conn_id``; {} when it is not set or nothing was taken."""
        from airflow_agent_provider.engines.quarantine import quarantine_name

        ref = result.datasets.get(quarantine_name(name))
        if not self.quarantine_conn_id or ref is None:
            return {}
        from airflow_agent_provider.operators._common import load_quarantined

        table = self.quarantine_table or quarantine_name(name)
        load_quarantined(
            self.quarantine_conn_id, {table: ref}, self.quarantine_key, context=context, staging_root=self.staging_root
        )
        self.log.info("Wrote %d quarantined row(s) to %s (%s)", ref.row_count, table, self.quarantine_conn_id)
        return {"quarantine_table": table, "quarantine_rows_loaded": ref.row_count}

    def _failure(self, name: str, result: StageResult) -> QuarantineFailed:
        remaining = [issue.summary() for issue in result.issues]
        message = (
            f"{self.task_id}: after quarantining {result.metrics['rows_quarantined']} row(s) of {name!r}, "
            f"{len(remaining)} issue(s) remain that quarantine cannot fix: {'; '.join(remaining[:5])}"
        )
        return QuarantineFailed(message, remaining_issues=remaining)


def _with_other_failures(result: StageResult, others: Sequence[StageResult]) -> StageResult:
    """``result`` failed with the issues of the other given validations that failed (never quarantined here)."""
    issues = [issue for other in others if not other.passed for issue in other.issues]
    if not issues:
        return result
    return result.model_copy(update={"status": "fail", "issues": [*result.issues, *issues]})
