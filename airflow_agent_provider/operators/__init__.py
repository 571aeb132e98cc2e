"""The provider's operators: one pipeline stage per module, imported on first use.

``from airflow_agent_provider.operators import ExtractOperator`` loads only ``operators.extract``;
no operator module imports pandas, DuckDB, pyarrow, anthropic or sqlglot at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_agent_provider.operators.base import ClaudeStageOperator, StageOperator
    from airflow_agent_provider.operators.branch import RemediationBranchOperator
    from airflow_agent_provider.operators.errors import StageFailed
    from airflow_agent_provider.operators.extract import ExtractOperator
    from airflow_agent_provider.operators.load import LoadOperator
    from airflow_agent_provider.operators.quarantine import QuarantineOperator
    from airflow_agent_provider.operators.remediate import SchemaRemediationOperator
    from airflow_agent_provider.operators.report import PipelineReportOperator
    from airflow_agent_provider.operators.transform import TransformOperator
    from airflow_agent_provider.operators.validate import ValidateOperator

_EXPORTS = {
    "ExtractOperator": "extract",
    "ValidateOperator": "validate",
    "TransformOperator": "transform",
    "LoadOperator": "load",
    "PipelineReportOperator": "report",
    "StageFailed": "errors",
    "RemediationBranchOperator": "branch",
    "SchemaRemediationOperator": "remediate",
    "QuarantineOperator": "quarantine",
    "StageOperator": "base",
    "ClaudeStageOperator": "base",
}

__all__ = [
    "ClaudeStageOperator",
    "ExtractOperator",
    "LoadOperator",
    "PipelineReportOperator",
    "QuarantineOperator",
    "RemediationBranchOperator",
    "SchemaRemediationOperator",
    "StageFailed",
    "StageOperator",
    "TransformOperator",
    "ValidateOperator",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
