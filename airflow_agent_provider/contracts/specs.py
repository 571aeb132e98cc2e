"""What a DAG author declares: sources, quality rules and transformations.

Parsed from the plain dicts of a DAG file, with errors that name the offending entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from airflow_agent_provider.contracts.identifiers import check_name


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SourceBase(_Spec):
    name: str = Field(description="the staged dataset's name (a plain identifier, unique among the sources)")
    chunk_size: int = Field(default=100_000, gt=0, description="rows read and staged per batch")
    expected_row_count_min: int | None = Field(
        default=None, ge=0, description="fewer rows fail the extract (overrides the operator's)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "source name")


class SqlSource(_SourceBase):
    """Rows from a SQL query through an Airflow connection (templated with the data interval).

    ``type`` is ``sql``, or ``database``: the name the seed articles use, kept so their examples run.
    """

    type: Literal["sql", "database"]
    conn_id: str = Field(description="the Airflow connection of the database (sqlite, postgres, any DbApiHook)")
    query: str = Field(description="one SELECT; Jinja-templated (``{{ data_interval_start }}`` and friends)")
    parameters: dict[str, Any] = Field(default_factory=dict, description="bound query parameters")


class Pagination(_Spec):
    """How an HTTP source walks its pages."""

    style: Literal["page", "cursor", "next_link"] = Field(
        description="``page``: numbered pages; ``cursor``: a cursor from each body; ``next_link``: a URL from each body"
    )
    page_param: str = Field(default="page", description="page style: the query parameter of the page number")
    start_page: int = Field(default=1, description="page style: the first page number")
    size_param: str | None = Field(default=None, description="the query parameter of the page size, if any")
    page_size: int | None = Field(default=None, description="the page size sent in ``size_param``")
    cursor_param: str = Field(default="cursor", description="cursor style: the query parameter of the cursor")
    cursor_path: str | None = Field(default=None, description="dotted path of the next cursor in the body")
    next_link_path: str | None = Field(default=None, description="dotted path of the next URL in the body")
    max_pages: int = Field(default=10_000, gt=0, description="stop after this many pages, with a warning")


class HttpSource(_SourceBase):
    """Records from a JSON API through an Airflow HTTP connection.

    ``type`` is ``http``, or ``api``: the name the seed articles use, kept so their examples run.
    """

    type: Literal["http", "api"]
    conn_id: str = Field(default="http_default", description="the Airflow HTTP connection (host, auth, headers)")
    endpoint: str = Field(default="", description="the path after the connection's host")
    method: Literal["GET", "POST"] = Field(default="GET", description="GET sends ``params`` as the query string")
    params: dict[str, Any] = Field(default_factory=dict, description="query parameters (POST: the JSON body)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    records_path: str | None = Field(default=None, description="dotted path to the list of records")
    pagination: Pagination | None = Field(default=None, description="how to walk the pages (see Pagination)")
    timeout_s: float = Field(default=30.0, gt=0, description="seconds per request")
    max_retries: int = Field(default=3, ge=0, le=10, description="retries of a failed request (429, 5xx, network)")


class FileSource(_SourceBase):
    """A file by path or object-store URI (csv, parquet, json, jsonl)."""

    type: Literal["file"]
    path: str = Field(description="a local path or an object-store URI (``s3://bucket/key.csv``); templated")
    format: Literal["csv", "parquet", "json", "jsonl"] | None = Field(
        default=None, description="default: from the suffix (``.ndjson`` reads as jsonl)"
    )
    delimiter: str = Field(default=",", description="csv: the field separator")
    encoding: str = Field(default="utf-8", description="csv, json, jsonl: the text encoding")
    conn_id: str | None = Field(default=None, description="the Airflow connection of an object-store URI")

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

RuleName = Literal[
    "not_null", "unique", "in_list", "in_dataset", "range", "regex", "within_last_n_days", "row_count_between", "sql"
]  # fmt: skip
RULE_NAMES: tuple[RuleName, ...] = get_args(RuleName)


@dataclass(frozen=True)
class RuleDoc:
    """What the reference page (docs/reference.md, ``make reference``) says about a quality rule.

    ``example`` is the rule as a DAG declares it; ``data`` a small table it is run against by the
    tests (the data interval ending :data:`EXAMPLE_INTERVAL_END`), which must find exactly ``issue``
    over ``affected_rows`` rows (None: no row count, e.g. ``row_count_between``); ``others`` are the
    run's other staged datasets the example reads. So the page cannot drift from the engine.
    """

    arguments: str
    counts: str
    nulls: str
    example: dict[str, Any]
    data: dict[str, list[Any]]
    issue: str
    affected_rows: int | None
    others: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


EXAMPLE_INTERVAL_END = datetime(2026, 11, 10)
"""The end of the data interval the rule examples run in."""

RULE_DOCS: dict[str, RuleDoc] = {
    "not_null": RuleDoc(
        arguments="``column``",
        counts="rows whose value is null",
        nulls="a null is the violation; NaN is a value, not a null",
        example={"rule": "not_null", "column": "user_id"},
        data={"user_id": [1, None, 3, None]},
        issue="not_null_violation",
        affected_rows=2,
    ),
    "unique": RuleDoc(
        arguments="``column``",
        counts="rows that share a value with another row (every copy counts: two rows holding 7 are 2 rows)",
        nulls="nulls are ignored: several nulls are not duplicates",
        example={"rule": "unique", "column": "event_id"},
        data={"event_id": [1, 2, 2, None, None]},
        issue="duplicate_values",
        affected_rows=2,
    ),
    "in_list": RuleDoc(
        arguments="``column``, ``values`` (a list; over a text column the values are compared as text)",
        counts="rows whose value is not in ``values``",
        nulls="a null passes (add ``not_null`` to forbid it); a null in ``values`` is ignored; "
        "NaN in a float column fails unless ``values`` holds NaN",
        example={"rule": "in_list", "column": "event_type", "values": ["click", "view"]},
        data={"event_type": ["click", "clik", "view", None]},
        issue="value_not_in_list",
        affected_rows=1,
    ),
    "in_dataset": RuleDoc(
        arguments="``column``, ``dataset`` (another staged dataset of the run), ``dataset_column`` "
        "(default: the same name as ``column``)",
        counts="rows whose value does not appear in ``dataset_column`` of ``dataset`` (referential integrity)",
        nulls="a null passes (add ``not_null`` to forbid it); nulls in the other dataset match nothing",
        example={"rule": "in_dataset", "column": "carrier", "dataset": "airlines"},
        data={"carrier": ["AA", "UA", "ZZ", "ZZ", None]},
        others={"airlines": {"carrier": ["AA", "UA", "DL"]}},
        issue="value_not_in_dataset",
        affected_rows=2,
    ),
    "range": RuleDoc(
        arguments="``column``, ``min`` and/or ``max`` (inclusive; leave one out for an open bound)",
        counts="rows whose value is below ``min`` or above ``max``",
        nulls="a null passes; NaN fails any ``max`` (it sorts above every number)",
        example={"rule": "range", "column": "amount", "min": 0, "max": 100},
        data={"amount": [0.0, 100.0, -3.0, 250.0, None]},
        issue="out_of_range",
        affected_rows=2,
    ),
    "regex": RuleDoc(
        arguments="``column``, ``pattern`` (a regular expression the whole value must match)",
        counts="rows whose value, read as text, does not match ``pattern`` in full",
        nulls="a null passes",
        example={"rule": "regex", "column": "email", "pattern": r"[^@\s]+@[^@\s]+\.[a-z]+"},
        data={"email": ["a@x.io", "bad", None]},
        issue="regex_mismatch",
        affected_rows=1,
    ),
    "within_last_n_days": RuleDoc(
        arguments="``column`` (a date or timestamp), ``days``; ``within_last_30_days`` reads as ``days: 30``",
        counts="rows older than ``days`` before the end of the run's data interval, or more than a day after it",
        nulls="a null passes; a column that is not a date or timestamp is a ``rule_error``",
        example={"rule": "within_last_n_days", "column": "event_time", "days": 7},
        data={"event_time": [datetime(2026, 11, 9), datetime(2026, 10, 1), None]},
        issue="stale_values",
        affected_rows=1,
    ),
    "row_count_between": RuleDoc(
        arguments="``min`` and/or ``max`` (inclusive numbers); no column",
        counts="the dataset's rows, once",
        nulls="every row counts, whatever its values",
        example={"rule": "row_count_between", "min": 5, "max": 1000},
        data={"id": [1, 2, 3]},
        issue="row_count_out_of_range",
        affected_rows=None,
    ),
    "sql": RuleDoc(
        arguments="``predicate``: one boolean SQL expression (DuckDB) over the dataset's columns; "
        "a subquery may read the run's other staged datasets by name; ``column`` is optional "
        "(it names the column in the issue and the sample)",
        counts="rows where the predicate is false",
        nulls="a row where the predicate is null passes (``NOT NULL`` is not true): write "
        "``x IS NOT NULL AND …`` to require a value. ``x IN (SELECT y FROM other)`` is null when ``y`` "
        "holds a null: use ``in_dataset`` for referential integrity",
        example={"rule": "sql", "predicate": "arr_time >= dep_time OR overnight"},
        data={"dep_time": [900, 2300, 1000], "arr_time": [1100, 100, 800], "overnight": [False, True, False]},
        issue="sql_predicate_failed",
        affected_rows=1,
    ),
}
"""Every rule's reference entry, keyed like :data:`RULE_NAMES` (a test keeps the two equal)."""

RULE_COMMON_ISSUES: dict[str, str] = {
    "missing_column": "the rule names a column the dataset lacks",
    "rule_error": "the rule could not run over this data (e.g. a text column under a numeric bound); "
    "the message says why",
}
"""Issues any rule can produce besides its own."""


class QualityRule(_Spec):
    """One quality rule. ``within_last_30_days`` (the seed's name) is read as ``within_last_n_days`` with 30."""

    rule: RuleName = Field(description="the rule's name (one of the rules below)")
    column: str | None = Field(default=None, description="the column it checks")
    values: list[Any] | None = Field(default=None, description="in_list: the allowed values")
    min: Any = Field(default=None, description="range, row_count_between: the inclusive lower bound")
    max: Any = Field(default=None, description="range, row_count_between: the inclusive upper bound")
    pattern: str | None = Field(default=None, description="regex: the pattern each value must match in full")
    days: int | None = Field(default=None, gt=0, description="within_last_n_days: how many days back")
    predicate: str | None = Field(default=None, description="sql rule: a boolean SQL expression every row must meet")
    dataset: str | None = Field(default=None, description="in_dataset: the other staged dataset of the run")
    dataset_column: str | None = Field(
        default=None, description="in_dataset: the column of ``dataset`` (default: ``column``)"
    )
    name: str | None = Field(default=None, description="a label for the issue (default ``rule(column)``)")

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
            "in_dataset": not self.dataset,
        }.get(self.rule, False)
        if missing:
            raise ValueError(f"rule {self.rule!r} is missing its argument (see the ValidateOperator docs)")
        if self.pattern:
            re.compile(self.pattern)
        if self.dataset is not None:
            check_name(self.dataset, "in_dataset dataset")
        return self

    @property
    def reference_column(self) -> str:
        """in_dataset: the column of the other dataset the values must appear in."""
        return str(self.dataset_column or self.column)

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
