"""Column lineage of a transform's SQL steps with sqlglot: each output column to the input columns it reads.

The steps run in order over tables named after the input datasets; a step is a table for the steps
after it. The last step's columns are traced through the earlier steps (given to sqlglot as
sources) down to input tables. Only steps with their SQL in hand count: a Python step, or SQL
Claude writes from a description, leaves the output without column lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts.types import DUCKDB_TYPES

if TYPE_CHECKING:
    from airflow_agent_provider.contracts import Transformation

log = logging.getLogger(__name__)

# output column -> [(input dataset, its column, "IDENTITY" | "TRANSFORMATION" | "AGGREGATION")]
ColumnSources = dict[str, list[tuple[str, str, str]]]


def transform_column_sources(
    steps: Sequence[Transformation],
    output_columns: Iterable[str],
    input_columns: Mapping[str, Mapping[str, str | None]],
    dialect: str = "duckdb",
) -> ColumnSources:
    """Trace each output column of ``steps`` back to the input datasets' columns ({} when it cannot)."""
    if not steps or any(step.type != "sql" or not step.sql for step in steps):
        return {}
    from sqlglot.errors import SqlglotError

    schema = {
        name: {col: DUCKDB_TYPES.get(kind or "string", "VARCHAR") for col, kind in cols.items()}
        for name, cols in input_columns.items()
    }
    sources = {step.name: str(step.sql) for step in steps[:-1]}
    inputs = {name.lower(): name for name in input_columns}
    traced: ColumnSources = {}
    for column in output_columns:
        try:
            reads = _trace(column, str(steps[-1].sql), sources, schema, dialect)
        except (SqlglotError, KeyError, ValueError) as err:
            log.info("OpenLineage: no column lineage for %s: %s", column, err)
            continue
        found = [(inputs[table], field, subtype) for table, field, subtype in reads if table in inputs]
        if found:
            traced[column] = found
    return traced


def _trace(
    column: str, sql: str, sources: Mapping[str, str], schema: Mapping[str, Any], dialect: str
) -> list[tuple[str, str, str]]:
    """[(table, column, subtype)] that ``column`` of ``sql`` reads, deduplicated, in order found."""
    from sqlglot import exp
    from sqlglot.lineage import lineage

    root = lineage(column, sql, schema=dict(schema), sources=dict(sources), dialect=dialect)
    nodes = list(root.walk())
    subtype = _subtype([node.expression for node in nodes])
    found: dict[tuple[str, str, str], None] = {}
    for node in nodes:
        if node.downstream or not isinstance(node.source, exp.Table):
            continue
        found[(node.source.name.lower(), node.name.rsplit(".", 1)[-1], subtype)] = None
    return list(found)


def _subtype(expressions: Sequence[Any]) -> str:
    """AGGREGATION when an aggregate is on the way, TRANSFORMATION when anything but a column is, else IDENTITY."""
    from sqlglot import exp

    values = [e.this if isinstance(e, exp.Alias) else e for e in expressions]
    if any(value.find(exp.AggFunc) is not None for value in values if isinstance(value, exp.Expression)):
        return "AGGREGATION"
    plain = (exp.Column, exp.Table, exp.Star)
    if all(isinstance(value, plain) for value in values if isinstance(value, exp.Expression)):
        return "IDENTITY"
    return "TRANSFORMATION"
