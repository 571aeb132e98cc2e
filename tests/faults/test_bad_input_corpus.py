"""The bad input corpus: every input ends as a failed validation or a clear error, and nothing is loaded.

Each case runs the pipeline as the reference DAG does: extract -> validate -> load (only when the
validation passed) into a PostgreSQL warehouse that already holds a table. Whatever the input, the
warehouse must end exactly as it was (every table's checksum), and the outcome is one of:

- a failed validation whose issues name the dataset and include the expected issue types, or
- an error whose message names the source (or the offending name) and the cause, chained with
  ``raise ... from`` to what it was raised from, so no traceback hides the cause.

Inputs: small files under ``tests/fixtures/bad_inputs/``, files generated here (a 1 MB and a 3 MB
cell, broken Parquet), a loopback HTTP API (loops, 429, 500, timeouts, HTML, wrong shapes), and
SQL sources on SQLite and PostgreSQL (errors, unreachable server, duplicate column names). A
control case of good inputs proves the pipeline loads when nothing is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import StageResult, parse_quality_rules, parse_sources
from airflow_agent_provider.engines.extract import HttpEndpoint, extract_sources
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.exceptions import AgentProviderError
from tests.faults._support import assert_explains, query, table_rows, warehouse_digest
from tests.process._procs import free_port
from tests.support.http_api import Api, api
from tests.support.http_api import Reply as ApiReply

__all__ = ["api"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs"
SCHEMA = {"id": "integer", "user_id": "integer", "event_type": "string", "amount": "float", "note": "string"}
RULES = parse_quality_rules(
    [
        {"rule": "not_null", "column": "id"},
        {"rule": "unique", "column": "id"},
        {"rule": "not_null", "column": "user_id"},
        {"rule": "in_list", "column": "event_type", "values": ["click", "view", "purchase"]},
        {"rule": "range", "column": "amount", "min": 0, "max": 10_000},
        {"rule": "regex", "column": "note", "pattern": r"^.{0,200}$"},
    ]
)
TARGET = "user_spend"
GOOD = [
    {"id": 1, "user_id": 10, "event_type": "click", "amount": 12.5, "note": "first"},
    {"id": 2, "user_id": 11, "event_type": "view", "amount": 0.0, "note": "second"},
]


@dataclass
class Context:
    """Where a case's source lives: fixture files, a scratch folder, the loopback API, SQL engines."""

    tmp: Path
    api: Api
    engines: dict[str, sa.Engine]

    def sql_engine(self, conn_id: str) -> sa.Engine:
        return self.engines[conn_id]

    def http_endpoint(self, conn_id: str) -> HttpEndpoint:
        if conn_id == "closed_port":
            return HttpEndpoint(base_url=f"http://127.0.0.1:{free_port()}")
        return HttpEndpoint(base_url=self.api.base_url)


Spec = Callable[[Context, str], dict[str, Any]]


@dataclass(frozen=True)
class Bad:
    """A bad input and how it must end: ``error`` matching ``expect``, or ``issues`` of these types."""

    source: Spec
    ends_in: str
    expect: str | frozenset[str]
    names: str | None = None  # what the error must name; default: the source


def error(source: Spec, cause: str, names: str | None = None) -> Bad:
    return Bad(source, "error", cause, names)


def issues(source: Spec, *types: str) -> Bad:
    return Bad(source, "issues", frozenset(types))


# ---------------------------------------------------------------------------------------------- sources


def fixture(filename: str, **extra: Any) -> Spec:
    return lambda ctx, name: {"name": name, "type": "file", "path": str(FIXTURES / filename), **extra}


def generated(suffix: str, write: Callable[[Path], None]) -> Spec:
    def spec(ctx: Context, name: str) -> dict[str, Any]:
        path = ctx.tmp / f"{name}.{suffix}"
        write(path)
        return {"name": name, "type": "file", "path": str(path)}

    return spec


def csv_with_note(chars: int) -> Callable[[Path], None]:
    return lambda path: path.write_text(f"id,user_id,event_type,amount,note\n1,10,click,1.5,{'x' * chars}\n")


def truncated_parquet(path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(GOOD), path)
    path.write_bytes(path.read_bytes()[:-40])


def parquet_of(rows: list[dict[str, Any]]) -> Callable[[Path], None]:
    return lambda path: pq.write_table(pa.Table.from_pylist(rows), path)


def http(reply: ApiReply | Callable[[dict[str, str], int], ApiReply], **extra: Any) -> Spec:
    def spec(ctx: Context, name: str) -> dict[str, Any]:
        ctx.api.route(f"/{name}", reply)
        return {"name": name, "type": "http", "conn_id": "api", "endpoint": f"/{name}", "max_retries": 1, **extra}

    return spec


def sql(conn_id: str, text: str) -> Spec:
    return lambda ctx, name: {"name": name, "type": "sql", "conn_id": conn_id, "query": text}


def one_page(_query: dict[str, str], _number: int) -> ApiReply:
    return ApiReply({"data": GOOD[:1], "next": "abc", "next_url": "?p=1"})


PAGE = {"style": "page"}
CURSOR = {"style": "cursor", "cursor_path": "next"}
NEXT_LINK = {"style": "next_link", "next_link_path": "next_url"}
BAD_ROWS = [{**GOOD[0], "user_id": None}, {**GOOD[1], "amount": -3.0, "event_type": "refund"}]

CORPUS = [
    # CSV files
    pytest.param(
        error(fixture("ragged_extra_field.csv"), r"malformed CSV at line 3.*expected 5 columns"),
        id="csv-ragged-extra-field",
    ),
    pytest.param(
        error(fixture("ragged_missing_field.csv"), r"malformed CSV at line 3.*expected 5 columns"),
        id="csv-ragged-missing-field",
    ),
    pytest.param(
        error(fixture("unterminated_quote.csv"), r"malformed CSV at line 3.*never closed"), id="csv-unterminated-quote"
    ),
    pytest.param(
        error(fixture("latin1_declared_utf8.csv"), r"not valid utf-8 text.*line 2"), id="csv-wrong-encoding-latin1"
    ),
    pytest.param(error(fixture("utf16_declared_utf8.csv"), r"malformed CSV"), id="csv-wrong-encoding-utf16"),
    pytest.param(error(fixture("binary_garbage.csv"), r"malformed CSV"), id="csv-binary-garbage"),
    pytest.param(error(fixture("empty.csv"), r"returned 0 rows; expected at least 1"), id="csv-empty-file"),
    pytest.param(error(fixture("header_only.csv"), r"returned 0 rows; expected at least 1"), id="csv-header-only"),
    pytest.param(issues(fixture("whitespace_only.csv"), "missing_column"), id="csv-whitespace-only"),
    pytest.param(issues(fixture("mixed_types_amount.csv"), "schema_mismatch"), id="csv-mixed-types"),
    pytest.param(issues(fixture("id_is_text.csv"), "schema_mismatch"), id="csv-key-is-text"),
    pytest.param(issues(fixture("renamed_column.csv"), "missing_column"), id="csv-renamed-column"),
    pytest.param(issues(fixture("missing_column.csv"), "missing_column"), id="csv-missing-column"),
    pytest.param(
        error(fixture("extra_column_unsafe_name.csv"), r"not a plain identifier", names="amount (EUR)"),
        id="csv-extra-column-unsafe-name",
    ),
    pytest.param(issues(fixture("duplicate_keys.csv"), "duplicate_values"), id="csv-duplicate-keys"),
    pytest.param(issues(fixture("nan_and_infinity.csv"), "out_of_range"), id="csv-nan-and-infinity"),
    pytest.param(issues(fixture("null_user_id.csv"), "not_null_violation"), id="csv-null-in-not-null-column"),
    pytest.param(issues(fixture("event_type_not_in_list.csv"), "value_not_in_list"), id="csv-value-not-in-list"),
    pytest.param(issues(fixture("negative_amount.csv"), "out_of_range"), id="csv-out-of-range"),
    pytest.param(issues(fixture("semicolon_delimited.csv"), "missing_column"), id="csv-wrong-delimiter"),
    pytest.param(issues(generated("csv", csv_with_note(1 << 20)), "regex_mismatch"), id="csv-1mb-cell"),
    pytest.param(
        error(
            generated("csv", csv_with_note(3 << 20)),
            r"malformed CSV at line 1: Maximum line size of \d+ bytes exceeded",
        ),
        id="csv-3mb-cell-beyond-the-line-limit",
    ),
    # JSON and JSON lines
    pytest.param(
        error(fixture("object_not_array.json"), r"expected a JSON array of records.*JSON object"),
        id="json-object-instead-of-array",
    ),
    pytest.param(error(fixture("array_of_scalars.json"), r"not objects"), id="json-array-of-scalars"),
    pytest.param(error(fixture("truncated.json"), r"broken JSON"), id="json-truncated"),
    pytest.param(error(fixture("empty_array.json"), r"returned 0 rows"), id="json-empty-array"),
    pytest.param(error(fixture("broken_line.jsonl"), r"broken JSON on line 3"), id="jsonl-broken-line"),
    pytest.param(issues(fixture("mixed_types.jsonl"), "schema_mismatch"), id="jsonl-mixed-types"),
    pytest.param(issues(fixture("nested_user.jsonl"), "schema_mismatch"), id="jsonl-nested-object-for-a-number"),
    # Parquet
    pytest.param(error(generated("parquet", truncated_parquet), r"cannot read|parquet"), id="parquet-truncated"),
    pytest.param(
        issues(generated("parquet", parquet_of([{**GOOD[0], "amount": "12,50 EUR"}])), "schema_mismatch"),
        id="parquet-wrong-types",
    ),
    pytest.param(
        issues(generated("parquet", parquet_of(BAD_ROWS)), "not_null_violation", "value_not_in_list", "out_of_range"),
        id="parquet-bad-values",
    ),
    # HTTP
    pytest.param(
        error(
            http(one_page, records_path="data", pagination=PAGE), r"pagination loops: page 2 returned the same records"
        ),
        id="http-page-pagination-loops",
    ),
    pytest.param(
        error(http(one_page, records_path="data", pagination=CURSOR), r"pagination loops.*cursor 'abc' came back"),
        id="http-cursor-pagination-loops",
    ),
    pytest.param(
        error(http(one_page, records_path="data", pagination=NEXT_LINK), r"pagination loops.*already fetched"),
        id="http-next-link-loops",
    ),
    pytest.param(
        error(
            http(ApiReply({"error": "slow down"}, status=429, headers={"Retry-After": "0"})),
            r"HTTP 429.*after 2 attempts",
        ),
        id="http-429",
    ),
    pytest.param(
        error(http(ApiReply({"error": "db down"}, status=500)), r"HTTP 500.*after 2 attempts.*db down"), id="http-500"
    ),
    pytest.param(error(http(ApiReply({"error": "who are you"}, status=401)), r"HTTP 401"), id="http-401"),
    pytest.param(
        error(http(ApiReply({"data": GOOD}, delay=2.0), timeout_s=0.3), r"timed out after 0.3 s \(2 attempts\)"),
        id="http-timeout",
    ),
    pytest.param(
        error(http(ApiReply(raw=b"<html><body>Maintenance</body></html>")), r"is not JSON.*Maintenance"),
        id="http-html-not-json",
    ),
    pytest.param(
        error(
            http(ApiReply({"data": GOOD[0]}), records_path="data"), r"expected a JSON array of records.*found an object"
        ),
        id="http-object-instead-of-array",
    ),
    pytest.param(
        error(
            http(ApiReply({"items": GOOD}), records_path="data"), r"records_path 'data' is not in the response.*items"
        ),
        id="http-records-path-missing",
    ),
    pytest.param(
        error(http(ApiReply({"data": [1, 2, 3]}), records_path="data"), r"record 0 .* is a number, not an object"),
        id="http-records-not-objects",
    ),
    pytest.param(
        error(
            lambda ctx, name: {"name": name, "type": "http", "conn_id": "closed_port", "max_retries": 1},
            r"cannot connect to http://127.0.0.1:\d+",
        ),
        id="http-connection-refused",
    ),
    pytest.param(
        issues(http(ApiReply({"data": BAD_ROWS}), records_path="data"), "not_null_violation", "out_of_range"),
        id="http-bad-values",
    ),
    # SQL
    pytest.param(
        error(sql("sqlite_src", "SELECT * FROM no_such_table"), r"query failed: .*no such table"),
        id="sql-sqlite-missing-table",
    ),
    pytest.param(
        error(sql("sqlite_src", "SELEC id FROM events"), r"query failed: .*syntax error"), id="sql-sqlite-syntax-error"
    ),
    pytest.param(
        error(
            sql("sqlite_src", "CREATE TEMP TABLE scratch (a INTEGER)"),
            r"returns no rows; an extract query must be a SELECT",
        ),
        id="sql-not-a-select",
    ),
    pytest.param(
        error(sql("sqlite_src", "SELECT id, user_id AS id FROM events"), r"returns column 'id' more than once"),
        id="sql-duplicate-column-names",
    ),
    pytest.param(
        issues(
            sql("sqlite_src", "SELECT id, user_id, event_type, amount, note FROM bad_events"),
            "schema_mismatch",
            "value_not_in_list",
        ),
        id="sql-sqlite-bad-values",
    ),
    pytest.param(
        error(
            sql("pg_src", "SELECT g AS id, 10 / (g - 700) AS user_id FROM generate_series(1, 1000) AS g"),
            r"query failed: division by zero",
        ),
        id="sql-postgres-error-mid-query",
    ),
    pytest.param(
        error(sql("pg_src", "SELECT nope FROM corpus_source"), r'query failed: column "nope" does not exist'),
        id="sql-postgres-missing-column",
    ),
    pytest.param(
        error(sql("pg_down", "SELECT 1 AS id"), r"cannot connect to the database"), id="sql-postgres-unreachable"
    ),
]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def warehouse(pg_server_url: str) -> Iterator[sa.Engine]:
    """The PostgreSQL warehouse: ``user_spend`` already holds two rows (what a bad input must not touch)."""
    engine = sa.create_engine(pg_server_url)
    query(engine, f"DROP TABLE IF EXISTS {TARGET}")
    query(
        engine,
        f"CREATE TABLE {TARGET} (id BIGINT PRIMARY KEY, user_id BIGINT, event_type TEXT, "
        "amount DOUBLE PRECISION, note TEXT)",
    )
    query(engine, f"INSERT INTO {TARGET} VALUES (100, 1, 'click', 1.0, 'kept'), (101, 2, 'view', 2.0, 'kept')")
    yield engine
    query(engine, f"DROP TABLE IF EXISTS {TARGET}")
    engine.dispose()


@pytest.fixture(scope="module")
def sql_sources(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sa.Engine]]:
    """A SQLite source database, a PostgreSQL source table, and a PostgreSQL server that is not there."""
    lite = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('sources') / 'source.db'}")
    query(lite, "CREATE TABLE events (id INTEGER, user_id INTEGER, event_type TEXT, amount REAL, note TEXT)")
    query(lite, "INSERT INTO events VALUES (1, 10, 'click', 12.5, 'first'), (2, 11, 'view', 0, 'second')")
    query(lite, "CREATE TABLE bad_events (id INTEGER, user_id TEXT, event_type TEXT, amount REAL, note TEXT)")
    query(lite, "INSERT INTO bad_events VALUES (1, 'u-10', 'click', 1, 'x'), (2, 'u-11', 'teleport', 2, 'y')")
    pg = sa.create_engine(pg_server_url)
    query(pg, "DROP TABLE IF EXISTS corpus_source")
    query(pg, "CREATE TABLE corpus_source AS SELECT 1 AS id, 10 AS user_id")
    down = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    yield {"sqlite_src": lite, "pg_src": pg, "pg_down": down}
    query(pg, "DROP TABLE IF EXISTS corpus_source")
    for engine in (lite, pg, down):
        engine.dispose()


@pytest.fixture
def context(tmp_path: Path, api: Api, sql_sources: dict[str, sa.Engine]) -> Context:
    return Context(tmp_path, api, sql_sources)


def run_pipeline(spec: dict[str, Any], ctx: Context, warehouse: sa.Engine) -> StageResult | AgentProviderError:
    """extract -> validate -> load (only when the validation passed); the failed validation or the error."""
    name = spec["name"]
    try:
        extracted = extract_sources(
            parse_sources([spec]),
            dataset_uri=lambda dataset: str(ctx.tmp / "staging" / dataset),
            sql_engine=ctx.sql_engine,
            http_endpoint=ctx.http_endpoint,
        )
        validation = validate_dataset(
            extracted.dataset(name), dataset=name, expected_schema=SCHEMA, quality_rules=RULES
        )
        if validation.passed:
            load_dataset(
                extracted.dataset(name),
                engine=warehouse,
                target_table=TARGET,
                load_strategy="upsert",
                upsert_key=["id"],
            )
        return validation
    except AgentProviderError as err:
        return err


# ---------------------------------------------------------------------------------------------- tests


class TestBadInputCorpus:
    @pytest.mark.parametrize("bad", CORPUS)
    def test_ends_in_a_failed_validation_or_a_clear_error_and_loads_nothing(
        self, bad: Bad, context: Context, warehouse: sa.Engine, request: pytest.FixtureRequest
    ) -> None:
        name = request.node.callspec.id.replace("-", "_")
        before = warehouse_digest(warehouse)
        outcome = run_pipeline(bad.source(context, name), context, warehouse)
        assert warehouse_digest(warehouse) == before, "a bad input changed the warehouse"
        if bad.ends_in == "error":
            assert isinstance(outcome, AgentProviderError), f"expected an error, got {outcome!r}"
            assert_explains(outcome, names=bad.names or f"'{name}'", cause=str(bad.expect))
        else:
            assert isinstance(outcome, StageResult), f"expected a failed validation, got {outcome!r}"
            assert outcome.status == "fail"
            assert bad.expect <= {issue.type for issue in outcome.issues}
            assert all(issue.dataset == name and issue.message for issue in outcome.issues)

    def test_the_corpus_has_at_least_thirty_inputs(self) -> None:
        assert len(CORPUS) >= 30


class TestGoodInputsLoad:
    """The control: the same pipeline loads good inputs of every kind, so the corpus fails for its inputs."""

    @pytest.mark.parametrize(
        "spec",
        [
            pytest.param(
                generated(
                    "csv",
                    lambda p: p.write_text(
                        "id,user_id,event_type,amount,note\n1,10,click,12.5,first\n2,11,view,0,second\n"
                    ),
                ),
                id="csv",
            ),
            pytest.param(generated("parquet", parquet_of(GOOD)), id="parquet"),
            pytest.param(http(ApiReply({"data": GOOD}), records_path="data"), id="http"),
            pytest.param(sql("sqlite_src", "SELECT id, user_id, event_type, amount, note FROM events"), id="sql"),
        ],
    )
    def test_loads_every_row(self, spec: Spec, context: Context, warehouse: sa.Engine) -> None:
        try:
            outcome = run_pipeline(spec(context, "good"), context, warehouse)
            assert isinstance(outcome, StageResult) and outcome.passed, outcome
            rows = table_rows(warehouse, TARGET)
            assert (1, 10, "click", 12.5, "first") in rows and (2, 11, "view", 0.0, "second") in rows
        finally:
            query(warehouse, f"DELETE FROM {TARGET} WHERE id < 100")
