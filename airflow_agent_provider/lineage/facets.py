"""OpenLineage datasets and facets from what a stage has in hand: its result, its specs, its names.

Every function imports the OpenLineage classes it builds when it runs; nothing here touches data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.generated.base import InputDatasetFacet

    from airflow_agent_provider.contracts import DatasetOrigin, QualityRule, StageResult
    from airflow_agent_provider.lineage.columns import ColumnSources


def schema_facet(columns: Mapping[str, str | None]) -> Any:
    """The ``schema`` facet: each column with its logical type (integer, float, string, ...)."""
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    fields = [
        SchemaDatasetFacetFields(name=name, type=kind, ordinal_position=position)
        for position, (name, kind) in enumerate(columns.items(), start=1)
    ]
    return SchemaDatasetFacet(fields=fields)


def input_dataset(
    origin: DatasetOrigin,
    columns: Mapping[str, str | None] | None = None,
    input_facets: Mapping[str, InputDatasetFacet] | None = None,
) -> InputDataset:
    """An input dataset, with its schema when its columns are known."""
    from openlineage.client.event_v2 import InputDataset

    facets = {"schema": schema_facet(columns)} if columns else {}
    return InputDataset(
        namespace=origin.namespace, name=origin.name, facets=facets, inputFacets=dict(input_facets or {})
    )


def output_dataset(
    origin: DatasetOrigin,
    columns: Mapping[str, str | None] | None = None,
    *,
    rows: int | None = None,
    column_lineage: Any = None,
) -> OutputDataset:
    """An output dataset with its schema, its column lineage and ``outputStatistics`` (rows written)."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet

    facets: dict[str, Any] = {"schema": schema_facet(columns)} if columns else {}
    if column_lineage is not None:
        facets["columnLineage"] = column_lineage
    statistics: dict[str, Any] = {}
    if rows is not None:
        statistics["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return OutputDataset(namespace=origin.namespace, name=origin.name, facets=facets, outputFacets=statistics)


def quality_facets(result: StageResult, rules: Sequence[QualityRule], checked_schema: bool) -> dict[str, Any]:
    """``dataQualityAssertions`` (one per rule, and the schema check) and ``dataQualityMetrics``.

    A rule succeeded when validation recorded no issue under its label; the metrics are the row count
    and each column's null count, as the validation measured them.
    """
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    failed = {issue.rule for issue in result.issues if issue.rule}
    assertions = [
        Assertion(assertion=rule.rule, success=rule.label not in failed, column=rule.column, name=rule.label)
        for rule in rules
    ]
    if checked_schema:
        assertions.append(Assertion(assertion="schema_match", success=bool(result.metrics.get("schema_match"))))
    facets: dict[str, Any] = {"dataQualityAssertions": DataQualityAssertionsDatasetFacet(assertions=assertions)}
    metrics = quality_metrics(result.metrics)
    if metrics is not None:
        facets["dataQualityMetrics"] = metrics
    return facets


def quality_metrics(metrics: Mapping[str, Any]) -> Any:
    """``dataQualityMetrics`` from a validation's metrics (``row_count``, ``null_counts``), or None."""
    from openlineage.client.generated.data_quality_metrics_input_dataset import (
        ColumnMetrics,
        DataQualityMetricsInputDatasetFacet,
    )

    rows = metrics.get("row_count")
    if not isinstance(rows, int):
        return None
    nulls = null_counts(metrics, rows)
    columns = {name: ColumnMetrics(nullCount=count) for name, count in nulls.items()}
    return DataQualityMetricsInputDatasetFacet(rowCount=rows, columnMetrics=columns)


def null_counts(metrics: Mapping[str, Any], rows: int) -> dict[str, int]:
    """Null counts per column: measured (``null_counts``), else from the rates of an older result."""
    counts = metrics.get("null_counts")
    if isinstance(counts, Mapping):
        return {str(name): int(count) for name, count in counts.items()}
    rates = metrics.get("null_rates") or {}
    return {str(name): round(float(rate) * rows) for name, rate in rates.items()}


def column_lineage_facet(sources: ColumnSources, origins: Mapping[str, Sequence[DatasetOrigin]]) -> Any:
    """``columnLineage``: each output column to the source columns it reads, named by their origins.

    :param sources: output column -> [(input dataset, its column, subtype)], from ``lineage.columns``.
    :param origins: input dataset -> the source datasets it was extracted from.
    """
    from openlineage.client.generated.column_lineage_dataset import (
        ColumnLineageDatasetFacet,
        Fields,
        InputField,
        Transformation,
    )

    fields = {}
    for column, reads in sources.items():
        inputs = [
            InputField(
                namespace=origin.namespace,
                name=origin.name,
                field=field,
                transformations=[Transformation(type="DIRECT", subtype=subtype)],
            )
            for dataset, field, subtype in reads
            for origin in origins.get(dataset, [])
        ]
        if inputs:
            fields[column] = Fields(inputFields=inputs)
    return ColumnLineageDatasetFacet(fields=fields) if fields else None


def identity_lineage(origin: DatasetOrigin, columns: Iterable[str]) -> Any:
    """``columnLineage`` of a copy: each column from the same-named column of ``origin``."""
    sources = {column: [("copied", column, "IDENTITY")] for column in columns}
    return column_lineage_facet(sources, {"copied": [origin]})


def operator_lineage(
    inputs: Sequence[Any] = (), outputs: Sequence[Any] = (), run_facets: Mapping[str, Any] | None = None
) -> Any:
    """What the OpenLineage listener asks an operator for."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=list(inputs), outputs=list(outputs), run_facets=dict(run_facets or {}))
