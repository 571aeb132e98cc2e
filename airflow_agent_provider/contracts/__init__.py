"""Typed contracts shared by every stage: results, issues, usage, decisions and specs.

Pure pydantic, no Airflow imports. What crosses XCom is always ``model.model_dump(mode="json")``.
"""

from airflow_agent_provider.contracts.decisions import (
    CastColumn,
    Diagnosis,
    DropRows,
    FillDefault,
    FixAction,
    FixPlan,
    QuarantineRows,
    RenameColumn,
    RouteDecision,
    RowRule,
)
from airflow_agent_provider.contracts.results import (
    DatasetOrigin,
    DatasetRef,
    Issue,
    PipelineState,
    StageResult,
    StageSummary,
    parse_each,
    parse_upstream,
)
from airflow_agent_provider.contracts.specs import (
    FileSource,
    HttpSource,
    Pagination,
    QualityRule,
    Source,
    SqlSource,
    Transformation,
    parse_quality_rules,
    parse_sources,
    parse_transformations,
)
from airflow_agent_provider.contracts.types import LogicalType
from airflow_agent_provider.contracts.usage import Usage

__all__ = [
    "CastColumn",
    "DatasetOrigin",
    "DatasetRef",
    "Diagnosis",
    "DropRows",
    "FileSource",
    "FillDefault",
    "FixAction",
    "FixPlan",
    "HttpSource",
    "Issue",
    "LogicalType",
    "Pagination",
    "PipelineState",
    "QualityRule",
    "QuarantineRows",
    "RenameColumn",
    "RouteDecision",
    "RowRule",
    "Source",
    "SqlSource",
    "StageResult",
    "StageSummary",
    "Transformation",
    "Usage",
    "parse_each",
    "parse_quality_rules",
    "parse_sources",
    "parse_transformations",
    "parse_upstream",
]
