"""What a DAG author declares: sources, quality rules and transformations.

Parsed from the plain dicts of a DAG file, with errors that name the offending entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from airflow_agent_provider.contracts.identifiers import check_name


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SourceBase(_Spec):
    name: str
    chunk_size: int = Field(default=100_000, gt=0)
    expected_row_count_min: int | None = Field(default=None, ge=0, description="overrides the stage-wide minimum")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "source name")


class SqlSource(_SourceBase):
    """Rows from a SQL query through an Airflow connection (templated with the data interval).

    ``type`` is ``sql``, or ``database``: the name the seed articles use, kept so their examples run.
    """

    type: Literal["sql", "database"]
    conn_id: str
    query: str
    parameters: dict[str, Any] = Field(default_factory=dict, description="bound query parameters")


class Pagination(_Spec):
    """How an HTTP source walks its pages."""

    style: Literal["page", "cursor", "next_link"]
    page_param: str = "page"
    start_page: int = 1
    size_param: str | None = None
    page_size: int | None = None
    cursor_param: str = "cursor"
    cursor_path: str | None = Field(default=None, description="dotted path of the next cursor in the body")
    next_link_path: str | None = Field(default=None, description="dotted path of the next URL in the body")
    max_pages: int = Field(default=10_000, gt=0)


class HttpSource(_SourceBase):
    """Records from a JSON API through an Airflow HTTP connection.

    ``type`` is ``http``, or ``api``: the name the seed articles use, kept so their examples run.
    """

    type: Literal["http", "api"]
    conn_id: str = "http_default"
    endpoint: str = ""
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    records_path: str | None = Field(default=None, description="dotted path to the list of records")
    pagination: Pagination | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)


class FileSource(_SourceBase):
    """A file by path or object-store URI (csv, parquet, json, jsonl)."""

    type: Literal["file"]
    path: str
    format: Literal["csv", "parquet", "json", "jsonl"] | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    conn_id: str | None = None

    @model_validator(mode="after")
    def _infer_format(self) -> FileSource:
        if self.format is None:
            suffix = PurePosixPath(self.path.split("?")[0]).suffix.lower().lstrip(".")
            if suffix == "ndjson":
                suffix = "jsonl"
            if suffix not in ("csv", "parquet", "json", "jsonl"):
                raise ValueError(f"cannot tell the format of {self.path!r}; set format to csv, parquet, json or jsonl")
            self.format = suffix  # type: ignore[assignment]
        return self


Source = Annotated[SqlSource | HttpSource | FileSource, Field(discriminator="type")]
_SOURCE = TypeAdapter(Source)

RuleName = Literal["not_null", "unique", "in_list", "range", "regex", "within_last_n_days", "row_count_between", "sql"]
RULE_NAMES: tuple[str, ...] = (
    "not_null",
    "unique",
    "in_list",
    "range",
    "regex",
    "within_last_n_days",
    "row_count_between",
    "sql",
)


class QualityRule(_Spec):
    """One quality rule. ``within_last_30_days`` (the seed's name) is read as ``within_last_n_days`` with 30."""

    rule: RuleName
    column: str | None = None
    values: list[Any] | None = None
    min: Any = None
    max: Any = None
    pattern: str | None = None
    days: int | None = Field(default=None, gt=0)
    predicate: str | None = Field(default=None, description="sql rule: a boolean SQL expression every row must meet")
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _sugar(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            match = re.fullmatch(r"within_last_(\d+)_days", str(data.get("rule", "")))
            if match:
                return {**data, "rule": "within_last_n_days", "days": int(match.group(1))}
        return data

    @model_validator(mode="after")
    def _arguments(self) -> QualityRule:
        needs_column = self.rule not in ("row_count_between", "sql")
        if needs_column and not self.column:
            raise ValueError(f"rule {self.rule!r} needs a column")
        missing = {
            "in_list": self.values is None,
            "range": self.min is None and self.max is None,
            "regex": not self.pattern,
            "within_last_n_days": self.days is None,
            "row_count_between": self.min is None and self.max is None,
            "sql": not self.predicate,
        }.get(self.rule, False)
        if missing:
            raise ValueError(f"rule {self.rule!r} is missing its argument (see the ValidateOperator docs)")
        if self.pattern:
            re.compile(self.pattern)
        return self

    @property
    def label(self) -> str:
        return self.name or (f"{self.rule}({self.column})" if self.column else self.rule)


class Transformation(_Spec):
    """A named transformation: SQL, SQL written from a description, or a Python callable."""

    name: str
    type: Literal["sql", "python"]
    sql: str | None = None
    description: str | None = None
    callable: str | None = None
    inputs: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "transformation name")

    @model_validator(mode="after")
    def _body(self) -> Transformation:
        if self.type == "sql" and not (self.sql or self.description):
            raise ValueError(f"sql transformation {self.name!r} needs sql or a description")
        if self.type == "python" and not self.callable:
            raise ValueError(f"python transformation {self.name!r} needs callable (a dotted path)")
        return self


def _parse_each(items: Sequence[Any], parse: Any, what: str) -> list[Any]:
    if isinstance(items, Mapping | str) or not isinstance(items, Sequence):
        raise TypeError(f"{what}s must be a list of dicts, got {type(items).__name__}")
    parsed = []
    for index, item in enumerate(items):
        label = item.get("name") or item.get("rule") if isinstance(item, Mapping) else None
        try:
            parsed.append(parse(item))
        except ValidationError as err:
            details = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{what} #{index + 1}{f' ({label})' if label else ''} is invalid: {details}") from None
    return parsed


def parse_sources(items: Sequence[Mapping[str, Any]]) -> list[SqlSource | HttpSource | FileSource]:
    sources = _parse_each(items, _SOURCE.validate_python, "source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    return sources


def parse_quality_rules(items: Sequence[Mapping[str, Any]] | None) -> list[QualityRule]:
    return _parse_each(items or [], QualityRule.model_validate, "quality rule")


def parse_transformations(items: Sequence[Mapping[str, Any]]) -> list[Transformation]:
    return _parse_each(items, Transformation.model_validate, "transformation")
