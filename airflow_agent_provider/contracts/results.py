"""Stage results: the one envelope every stage returns, and the run's pipeline-state document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_agent_provider.contracts.decisions import Diagnosis, RouteDecision
from airflow_agent_provider.contracts.types import LogicalType
from airflow_agent_provider.contracts.usage import Usage

StageName = Literal["extract", "validate", "remediate", "quarantine", "transform", "load", "branch", "report"]
StageStatus = Literal["success", "pass", "fail"]
"""One meaning per value. ``success``: a stage that does work (extract, transform, load, applying a fix
plan) did it. ``pass`` / ``fail``: a stage that checks data (validate; quarantine and schema
remediation, which end by validating again) found it passing / failing. A stage that could not run
raises instead of returning a status. ``StageResult.passed`` is true for ``success`` and ``pass``.
(``error`` and ``skipped`` were listed once, but no stage ever returned them, so no stored result holds them.)"""

M = TypeVar("M", bound=BaseModel)

MAX_SAMPLE_VALUES = 5
MAX_SAMPLE_CHARS = 120


def _bounded(value: Any) -> Any:
    """Keep a sample value small and JSON-safe: long text is cut, odd types become text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class DatasetOrigin(_Model):
    """A dataset named as OpenLineage names it: the source a staged dataset's rows were read from."""

    namespace: str = Field(description="the data source, e.g. postgres://host:5432, sqlite:///path/db, file, s3://b")
    name: str = Field(description="the dataset within it, e.g. db.schema.table, a table, a path or object key")


class DatasetRef(_Model):
    """Where a staged dataset lives and what it holds. Never the rows themselves."""

    uri: str
    row_count: int
    columns: dict[str, LogicalType | None] = Field(
        default_factory=dict, description="column name -> logical type; null for a column of NULLs only"
    )
    checksum: str = ""
    format: Literal["parquet"] = "parquet"
    bytes: int | None = None
    origins: list[DatasetOrigin] = Field(
        default_factory=list, description="the source datasets the rows came from (set by extract when lineage is on)"
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _untyped_column(cls, value: Any) -> Any:
        """Results written before 2026-12 name a column of NULLs only ``"null"``."""
        return {k: None if v == "null" else v for k, v in value.items()} if isinstance(value, Mapping) else value


class Issue(_Model):
    """One data-quality finding, with a bounded sample of offending values."""

    type: str
    column: str | None = None
    rule: str | None = None
    expected: Any = None
    found: Any = None
    affected_rows: int = 0
    threshold: float | None = None
    actual: float | None = None
    sample: list[Any] = Field(default_factory=list)
    message: str = ""
    dataset: str | None = None

    @field_validator("sample", mode="before")
    @classmethod
    def _bound_sample(cls, value: Any) -> list[Any]:
        return [_bounded(v) for v in list(value or [])[:MAX_SAMPLE_VALUES]]

    @field_validator("expected", "found", mode="before")
    @classmethod
    def _bound_scalar(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_bounded(v) for v in list(value)[:50]]
        return _bounded(value)

    def summary(self) -> str:
        where = f"{self.dataset + '.' if self.dataset else ''}{self.column or '*'}"
        return self.message or f"{self.type} on {where}: {self.affected_rows} rows"


class StageResult(_Model):
    """The envelope every stage returns through XCom (as ``model_dump(mode="json")``)."""

    stage: StageName
    status: StageStatus
    task_id: str | None = None
    datasets: dict[str, DatasetRef] = Field(default_factory=dict)
    issues: list[Issue] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    duration_s: float = 0.0
    started_at: datetime | None = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    recommendation: str | None = None
    diagnosis: Diagnosis | None = None
    decision: RouteDecision | None = None

    @property
    def passed(self) -> bool:
        """The stage did its work (``success``) or its data passed the checks (``pass``)."""
        return self.status != "fail"

    def dataset(self, name: str | None = None) -> DatasetRef:
        """The named dataset, or the only one when no name is given."""
        if name is not None:
            if name not in self.datasets:
                known = ", ".join(sorted(self.datasets)) or "none"
                raise KeyError(f"stage {self.task_id or self.stage!r} has no dataset {name!r} (has: {known})")
            return self.datasets[name]
        if len(self.datasets) != 1:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ValueError(f"stage {self.task_id or self.stage!r} has datasets {known}; name the one you want")
        return next(iter(self.datasets.values()))

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, value: StageResult | Mapping[str, Any]) -> StageResult:
        if isinstance(value, StageResult):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a stage result (dict from XCom), got {type(value).__name__}")
        return cls.model_validate(dict(value))


def parse_upstream(value: Any) -> list[StageResult]:
    """Turn an ``upstream=`` argument (one result, a list, a lazy XCom sequence) into results.

    ``None`` entries (a skipped upstream) are dropped.
    """
    if value is None:
        return []
    if isinstance(value, StageResult | Mapping):
        return [StageResult.from_xcom(value)]
    if isinstance(value, str | bytes):
        raise TypeError("upstream must be a stage result or a list of them (pass upstream=task.output)")
    if isinstance(value, Iterable):
        return [StageResult.from_xcom(v) for v in value if v is not None]
    raise TypeError(f"upstream must be a stage result or a list of them, got {type(value).__name__}")


def parse_each(values: Iterable[Any] | None, model: type[M]) -> list[M]:
    """The values that are ``model`` records, parsed once; others (None, a skipped task, odd values) left out."""
    parsed = []
    for value in values or []:
        try:
            parsed.append(value if isinstance(value, model) else model.model_validate(value))
        except ValueError:
            continue
    return parsed


class StageSummary(_Model):
    """One stage in the pipeline-state document.

    ``rows`` is what the stage passed on (``rows_out``): a load's rows loaded, a quarantine's clean
    rows (not the rows it was given). ``rows_in`` (what it was given, when it says) and
    ``rows_quarantined`` (rows it set aside) are named beside it.
    """

    task_id: str
    stage: str
    status: str
    duration_s: float | None = None
    started_at: datetime | None = None
    rows: int | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rows_quarantined: int | None = None
    issues: int = 0
    top_issues: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    output: dict[str, Any] = Field(default_factory=dict)
    output_bytes: int = 0


class PipelineState(_Model):
    """The whole run in one document: per stage status, durations, rows, issues, tokens and cost."""

    pipeline_id: str
    dag_id: str
    run_id: str
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None  # the data the run processed: [start, end)
    data_interval_end: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: Literal["success", "failed", "partial"] = "success"
    stages: dict[str, StageSummary] = Field(default_factory=dict)
    decisions: list[RouteDecision] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    rows_loaded: int = 0
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
