"""The provider's own exception types, free of Airflow (operators map them to Airflow's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_agent_provider.contracts import Usage


class AgentProviderError(Exception):
    """Base of every domain error raised by the engines and the agent layer."""


class SourceError(AgentProviderError):
    """A source could not be extracted; the message names the source and the cause."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"source {source!r}: {cause}")
        self.source = source
        self.cause = cause


class SourceUnavailable(SourceError):
    """The source still answered HTTP 5xx, 429 or 408 after its own retries: a later try may get through."""


class RowCountTooLow(SourceError):
    """A source returned fewer rows than ``expected_row_count_min``."""


class ValidationFailed(AgentProviderError):
    """A validation failed and the DAG asked the task to fail on it."""


NO_SQL_WRITER = (
    "it is given as a description, and description transformations need SQL written by Claude: "
    "configure the Claude connection (anthropic_default) or give the transformation `sql`"
)


class TransformError(AgentProviderError):
    """A transformation failed; the message names the transformation."""

    def __init__(self, transformation: str, cause: str) -> None:
        super().__init__(f"transformation {transformation!r}: {cause}")
        self.transformation = transformation
        self.cause = cause


class UnsafeIdentifier(ValueError, AgentProviderError):
    """A table, schema or column name that is not a plain identifier."""


class UnsafeSQL(AgentProviderError):
    """SQL that is not one read-only query over the staged tables."""


class LoadError(AgentProviderError):
    """A load failed or its post-load check failed; the transaction was rolled back."""


class SchemaConflict(LoadError):
    """The data's column types cannot be written to the existing table's columns."""


class ModelCallError(AgentProviderError):
    """A model call failed for good (after bounded retries); the caller takes its fallback."""

    def __init__(self, reason: str, message: str, *, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.usage = usage  # what the failed decision already spent (None: nothing was sent)


class BudgetExhausted(ModelCallError):
    """The run's model budget (cost or calls) is spent; no further calls are made."""

    def __init__(self, message: str, *, usage: Usage | None = None) -> None:
        super().__init__("budget_exhausted", message, usage=usage)


class FixPlanNotApplicable(AgentProviderError):
    """A fix plan does not fit the data (a column it names is missing, a value is not of the column's type)."""
