"""TransformOperator: run named transformations over staged datasets and stage the result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_agent_provider.operators.base import ClaudeStageOperator
from airflow_agent_provider.operators.errors import stage_errors

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_agent_provider.agents.sql import SqlWriter


class TransformOperator(ClaudeStageOperator):
    """Run transformations, in order, over every upstream dataset (each a table named after it).

    Each step's result is a table under the step's ``name`` for the steps after it; the last result
    is staged as ``output_dataset``. SQL runs in an isolated DuckDB that cannot read or write files.
    Returns the ``transform`` stage result with ``transformations_applied``, ``rows_before``,
    ``rows_after``, ``rows_filtered`` and ``transformation_details``.

    :param upstream: the upstream stage result(s): ``task.output`` or ``[a.output, b.output]``. Templated.
    :param transformations: list of steps: ``{name, type: "sql", sql}``, ``{name, type: "sql",
        description}`` (SQL written by Claude once and cached in ``plans_folder``) or
        ``{name, type: "python", callable: "package.module.function"}`` (pandas in, pandas out).
        Templated.
    :param output_dataset: the name of the staged result. Templated.
    :param staging_root: where staged data goes (default as for ``ExtractOperator``). Templated.
    :param plans_folder: where SQL written from a description is cached. Templated.
    :param dialect: the SQL dialect the ``sql`` steps are written in, by sqlglot's name (default
        ``duckdb``). Steps in another dialect are transpiled with sqlglot; in warehouse-native staging
        (inputs staged by an ``ExtractOperator`` with ``staging_conn_id``) the steps run inside the
        warehouse, so ``dialect="postgres"`` lets a step use PostgreSQL's own SQL. Either way every step
        passes the same SQL gate. Templated.

    SQL is written from a description with the Claude settings of ``ClaudeStageOperator`` (``model``,
    ``claude_conn_id``, ``timeout_s``, ``max_cost_usd``, ``max_model_calls``).
    """

    template_fields: Sequence[str] = (
        "upstream", "transformations", "output_dataset", "staging_root", "plans_folder", "dialect",
        *ClaudeStageOperator.claude_template_fields,
    )  # fmt: skip
    template_fields_renderers: ClassVar[dict[str, str]] = {"transformations": "json"}
    ui_color = "#d5f5e3"
    stage = "transform"

    def __init__(
        self,
        *,
        upstream: Any,
        transformations: list[dict[str, Any]],
        output_dataset: str,
        staging_root: str | None = None,
        plans_folder: str | None = None,
        dialect: str = "duckdb",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dialect = dialect
        self.upstream = upstream
        self.transformations = transformations
        self.output_dataset = output_dataset
        self.staging_root = staging_root
        self.plans_folder = plans_folder

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_agent_provider.contracts import parse_transformations, parse_upstream
        from airflow_agent_provider.engines.transform import run_transformations
        from airflow_agent_provider.operators import _common
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        scope = _common.run_scope(context)
        with stage_errors(self.task_id):
            inputs = _common.all_datasets(parse_upstream(self.upstream))
            steps = parse_transformations(self.transformations)
            writer = self._sql_writer(context) if any(s.description and not s.sql for s in steps) else None
            result = run_transformations(
                inputs,
                steps,
                output_dataset=self.output_dataset,
                output_uri=_common.output_uri(scope, self.staging_root, inputs, self.output_dataset),
                write_sql=writer,
                dialect=self.dialect,
                log=_common.progress_logger(self.log, self.task_id),
            )
        result.task_id = self.task_id
        if writer is not None:
            result.usage = result.usage + writer.usage
        self.log.info(
            "Transformed %s input row(s) into %s row(s) of %s in %.2fs",
            result.metrics.get("rows_before"),
            result.metrics.get("rows_after"),
            self.output_dataset,
            result.duration_s,
        )
        return self.keep_for_lineage(context, result.model_dump(mode="json"))

    def _sql_writer(self, context: Context) -> SqlWriter:
        """Claude's SQL writer for described steps: reviewed plans from ``plans_folder`` first."""
        from airflow_agent_provider.agents.plans import PlanCache
        from airflow_agent_provider.agents.sql import SqlWriter
        from airflow_agent_provider.operators._claude import plans_folder

        return SqlWriter(self.claude(context), cache=PlanCache(plans_folder(self.plans_folder)))
