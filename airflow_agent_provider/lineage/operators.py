"""What each operator tells the OpenLineage listener, from its rendered arguments and the result it kept.

``lineage_of(operator, kept)`` is called at the start of a task (``kept`` None), and on completion
or failure (``kept``: the stage result or route decision ``execute`` kept, or None when it failed
before having one). Nothing here reads data or asks a database: names come from the results'
``origins`` and the connections' host, port and database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_agent_provider.contracts import DatasetOrigin, DatasetRef, StageResult, parse_upstream
from airflow_agent_provider.lineage import facets, naming

log = logging.getLogger(__name__)

Builder = Callable[[Any, Any], Any]


def lineage_of(operator: Any, kept: Any) -> Any:
    """The ``OperatorLineage`` of ``operator`` (its class picks the builder)."""
    for cls, builder in _builders():
        if isinstance(operator, cls):
            return builder(operator, kept)
    return facets.operator_lineage()


def _builders() -> list[tuple[type, Builder]]:
    from airflow_agent_provider.operators.branch import RemediationBranchOperator
    from airflow_agent_provider.operators.extract import ExtractOperator
    from airflow_agent_provider.operators.load import LoadOperator
    from airflow_agent_provider.operators.quarantine import QuarantineOperator
    from airflow_agent_provider.operators.remediate import SchemaRemediationOperator
    from airflow_agent_provider.operators.transform import TransformOperator
    from airflow_agent_provider.operators.validate import ValidateOperator

    return [
        (ExtractOperator, extract_lineage),
        (ValidateOperator, validate_lineage),
        (RemediationBranchOperator, route_lineage),
        (SchemaRemediationOperator, remediation_lineage),
        (QuarantineOperator, quarantine_lineage),
        (TransformOperator, transform_lineage),
        (LoadOperator, load_lineage),
    ]


# --- extract -------------------------------------------------------------------------------------


def extract_origins(sources: Sequence[Mapping[str, Any]]) -> dict[str, list[DatasetOrigin]]:
    """Each source's name -> the datasets it reads (its query's tables, its file, its endpoint)."""
    from airflow_agent_provider.contracts import HttpSource, SqlSource, parse_sources

    found = {}
    for source in parse_sources(sources):
        connection: Any = None
        if isinstance(source, SqlSource):
            from airflow.sdk import BaseHook

            connection = BaseHook.get_connection(source.conn_id)
        elif isinstance(source, HttpSource):
            from airflow_agent_provider.operators.extract import http_endpoint

            connection = http_endpoint(source.conn_id).base_url
        found[source.name] = naming.source_origins(source, connection)
    return found


def extract_lineage(operator: Any, kept: Any) -> Any:
    """Inputs: the sources' datasets, with their schema once extracted (a query over several tables
    also outputs its staged result, the one dataset that has that schema)."""
    result = _result(kept)
    if result is None:
        origins = extract_origins(operator.sources)
        return facets.operator_lineage([facets.input_dataset(o) for found in origins.values() for o in found])
    inputs, outputs = [], []
    for ref in result.datasets.values():
        single = len(ref.origins) == 1
        inputs += [facets.input_dataset(origin, ref.columns if single else None) for origin in ref.origins]
        if not single:
            staged = naming.staged_origin(ref.uri, operator.dag_id)
            outputs.append(facets.output_dataset(staged, ref.columns, rows=ref.row_count))
    return facets.operator_lineage(inputs, outputs)


# --- validate, route, remediate, quarantine ------------------------------------------------------


def validate_lineage(operator: Any, kept: Any) -> Any:
    """Input: the checked dataset, with ``dataQualityAssertions`` and ``dataQualityMetrics`` once checked."""
    from airflow_agent_provider.contracts import parse_quality_rules

    _, ref, origin = checked_dataset(operator, operator.upstream)
    result = _result(kept)
    quality = {}
    if result is not None:
        rules = parse_quality_rules(operator.quality_rules)
        quality = facets.quality_facets(result, rules, checked_schema=bool(operator.expected_schema))
    return facets.operator_lineage([facets.input_dataset(origin, ref.columns, quality)])


def route_lineage(operator: Any, kept: Any) -> Any:
    """The ``agentRouteDecision`` run facet, once the route is decided."""
    if not isinstance(kept, Mapping):
        return facets.operator_lineage()
    from airflow_agent_provider.contracts import RouteDecision
    from airflow_agent_provider.lineage.decisions import ROUTE_FACET, route_facet

    decision = RouteDecision.model_validate(dict(kept))
    return facets.operator_lineage(run_facets={ROUTE_FACET: route_facet(decision)})


def remediation_lineage(operator: Any, kept: Any) -> Any:
    """Input: the fixed dataset; outputs: quarantine tables written; the ``agentRemediation`` run facet."""
    from airflow_agent_provider.lineage.decisions import REMEDIATION_FACET, remediation_facet, remediation_facet_of

    name, ref, origin = checked_dataset(operator, operator.validation)
    inputs = [facets.input_dataset(origin, ref.columns)]
    result = _result(kept)
    if result is not None:
        loaded = dict(result.metrics.get("quarantine_loaded") or {})
        outputs = _tables(operator.quarantine_conn_id, {t: (result.datasets.get(t), n) for t, n in loaded.items()})
        run = {REMEDIATION_FACET: remediation_facet_of(result, name, operator.model)}
        return facets.operator_lineage(inputs, outputs, run)
    if isinstance(kept, Mapping) and "iterations" in kept:  # failed: the iterations it kept
        facet = remediation_facet(name, "fail", list(kept["iterations"]), usage=kept.get("usage"),
                                  model=operator.model, stopped_because=kept.get("stopped_because"))  # fmt: skip
        return facets.operator_lineage(inputs, run_facets={REMEDIATION_FACET: facet})
    return facets.operator_lineage(inputs)


def quarantine_lineage(operator: Any, kept: Any) -> Any:
    """Input: the quarantined dataset; output: the quarantine table, when rows were written to it."""
    name, ref, origin = checked_dataset(operator, operator.validation)
    inputs = [facets.input_dataset(origin, ref.columns)]
    result = _result(kept)
    table = result.metrics.get("quarantine_table") if result is not None else None
    if result is None or not table:
        return facets.operator_lineage(inputs)
    from airflow_agent_provider.engines.quarantine import quarantine_name

    written = (result.datasets.get(quarantine_name(name)), int(result.metrics.get("quarantine_rows_loaded") or 0))
    return facets.operator_lineage(inputs, _tables(operator.quarantine_conn_id, {str(table): written}))


# --- transform, load -----------------------------------------------------------------------------


def transform_lineage(operator: Any, kept: Any) -> Any:
    """Inputs: every input dataset; output: the staged result, with ``columnLineage`` to the sources."""
    from airflow_agent_provider.contracts import parse_transformations
    from airflow_agent_provider.lineage.columns import transform_column_sources
    from airflow_agent_provider.operators._common import all_datasets

    results = parse_upstream(operator.upstream)
    located = all_datasets(results)
    names = {name: identity(name, ref, results, operator.dag_id) for name, ref in located.items()}
    inputs = [facets.input_dataset(names[name], ref.columns) for name, ref in located.items()]
    result = _result(kept)
    if result is None or operator.output_dataset not in result.datasets:
        return facets.operator_lineage(inputs)
    output = result.datasets[operator.output_dataset]
    steps = parse_transformations(operator.transformations)
    columns = {name: ref.columns for name, ref in located.items()}
    sources = transform_column_sources(steps, output.columns, columns)
    lineage = facets.column_lineage_facet(sources, {name: [origin] for name, origin in names.items()})
    staged = naming.staged_origin(output.uri, operator.dag_id)
    return facets.operator_lineage(
        inputs, [facets.output_dataset(staged, output.columns, rows=output.row_count, column_lineage=lineage)]
    )


def load_lineage(operator: Any, kept: Any) -> Any:
    """Input: the loaded dataset; outputs: the warehouse table (schema, rows written) and its snapshot."""
    from airflow.sdk import BaseHook

    _, ref, origin = checked_dataset(operator, operator.upstream)
    connection = BaseHook.get_connection(operator.conn_id)
    target = naming.table_origin(connection, operator.target_table)
    if target is None:
        return facets.operator_lineage([facets.input_dataset(origin, ref.columns)])
    result = _result(kept)
    rows = int(result.metrics["rows_loaded"]) if result is not None and "rows_loaded" in result.metrics else None
    copy = facets.identity_lineage(origin, ref.columns)
    outputs = [facets.output_dataset(target, ref.columns, rows=rows, column_lineage=copy)]
    snapshot = result.metrics.get("snapshot_created") if result is not None else None
    if snapshot:
        snapshot_origin = naming.table_origin(connection, str(snapshot))
        outputs += [facets.output_dataset(snapshot_origin)] if snapshot_origin else []
    return facets.operator_lineage([facets.input_dataset(origin, ref.columns)], outputs)


# --- names ---------------------------------------------------------------------------------------


def checked_dataset(operator: Any, upstream: Any) -> tuple[str, DatasetRef, DatasetOrigin]:
    """(name, ref, lineage name) of the dataset ``operator`` works on, picked from ``upstream`` as it picks it."""
    from airflow_agent_provider.operators._common import find_dataset

    results = parse_upstream(upstream)
    name, holder = find_dataset(results, operator.dataset)
    ref = holder.datasets[name]
    return name, ref, identity(name, ref, results, operator.dag_id)


def identity(name: str, ref: DatasetRef, results: Sequence[StageResult], dag_id: str) -> DatasetOrigin:
    """A dataset's lineage name: its one origin (also when a remediation restaged it under the same
    name), else its stable staging name (a stage's own output, or a query over several tables)."""
    recorded = (r.datasets[name].origins for r in results if name in r.datasets and r.datasets[name].origins)
    origins = ref.origins or next(recorded, [])
    if len(origins) == 1:
        return origins[0]
    return naming.staged_origin(ref.uri, dag_id)


def _tables(conn_id: str | None, written: Mapping[str, tuple[DatasetRef | None, int]]) -> list[Any]:
    """Output datasets for tables written through ``conn_id`` (schema from the staged rows, rows written)."""
    if not conn_id or not written:
        return []
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    outputs = []
    for table, (ref, rows) in written.items():
        origin = naming.table_origin(connection, table)
        if origin is not None:
            outputs.append(facets.output_dataset(origin, ref.columns if ref else None, rows=rows))
    return outputs


def _result(kept: Any) -> StageResult | None:
    """The stage result a task kept (None for a route decision, a failure record or nothing)."""
    if isinstance(kept, Mapping) and "stage" in kept and "status" in kept:
        return StageResult.from_xcom(kept)
    return None
