"""The extract engine against real sources: SQLite and PostgreSQL, a loopback HTTP API, files on disk.

Every test reads the staged Parquet back (or inspects the raised error): counts, values, types,
part files, checksums. The HTTP API is a stdlib ThreadingHTTPServer on 127.0.0.1 scripted per test.
"""

from __future__ import annotations

import codecs
import json
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import StageResult, parse_sources
from airflow_agent_provider.engines.extract import HttpEndpoint, extract_sources
from airflow_agent_provider.engines.sources import http as http_source
from airflow_agent_provider.engines.staging import part_files, read_frame
from airflow_agent_provider.exceptions import RowCountTooLow, SourceError
from tests.support.http_api import Api, Reply, api

__all__ = ["api"]

# ---- helpers ---------------------------------------------------------------------------------


def extract(root: str, sources: list[dict[str, Any]], **kwargs: Any) -> StageResult:
    return extract_sources(parse_sources(sources), dataset_uri=lambda name: f"{root}/run/{name}", **kwargs)


def rows_of(result: StageResult, name: str, order_by: str | None = None) -> list[dict[str, Any]]:
    frame = read_frame(result.datasets[name].uri)
    if order_by:
        frame = frame.sort_values(order_by).reset_index(drop=True)
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    """pandas NaN/NaT -> None, so rows compare with plain Python values."""
    try:
        import pandas as pd

        if not isinstance(value, list | dict) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def parts(result: StageResult, name: str) -> list[str]:
    return part_files(result.datasets[name].uri)


def raised(excinfo: pytest.ExceptionInfo[SourceError]) -> tuple[str, str]:
    return excinfo.value.source, excinfo.value.cause


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries back off in tens of milliseconds here, not half seconds."""
    monkeypatch.setattr(http_source, "RETRY_BASE_DELAY_S", 0.02)


def http(api: Api, staging_root: str, sources: list[dict[str, Any]], **kwargs: Any) -> StageResult:
    return extract(staging_root, [{"type": "http", **s} for s in sources], http_endpoint=api.endpoint(), **kwargs)


def users(first: int, count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"user {i}"} for i in range(first, first + count)]


# ---- SQL -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_events(sqlite_url: str) -> sa.Engine:
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id INTEGER, kind TEXT, amount REAL, note TEXT)")
        conn.exec_driver_sql(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            [(i, ["click", "view"][i % 2], i * 1.5, None if i % 5 else f"n{i}") for i in range(1, 26)],
        )
    return engine


class TestSqlSources:
    def test_sqlite_query_is_staged_in_chunks_with_bound_parameters(
        self, staging_root: str, sqlite_events: sa.Engine
    ) -> None:
        source = {
            "name": "events",
            "type": "sql",
            "conn_id": "warehouse",
            "query": "SELECT * FROM events WHERE id > :after ORDER BY id",
            "parameters": {"after": 3},
            "chunk_size": 10,
        }
        result = extract(staging_root, [source], sql_engine=lambda _c: sqlite_events)

        ref = result.datasets["events"]
        assert ref.row_count == 22
        assert len(parts(result, "events")) == 3
        assert ref.columns == {"id": "integer", "kind": "string", "amount": "float", "note": "string"}
        rows = rows_of(result, "events", order_by="id")
        assert [r["id"] for r in rows] == list(range(4, 26))
        assert rows[1] == {"id": 5, "kind": "view", "amount": 7.5, "note": "n5"}

    def test_sqlite_column_whose_values_change_type_is_typed_in_one_read(
        self, staging_root: str, sqlite_url: str
    ) -> None:
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER, code, ratio, at)")
            values = [
                (i, i * 10 if i != 17 else "x17", i if i < 8 else i + 0.5, f"2026-11-{i:02d}" if i != 3 else 3)
                for i in range(1, 21)
            ]
            conn.exec_driver_sql("INSERT INTO t VALUES (?, ?, ?, ?)", values)
        queries: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, *_a: queries.append(sql))
        logged: list[str] = []
        source = {"name": "t", "type": "sql", "conn_id": "c", "query": "SELECT * FROM t ORDER BY id", "chunk_size": 5}

        result = extract(staging_root, [source], sql_engine=lambda _c: engine, log=logged.append)

        assert [q for q in queries if "FROM t" in q] == ["SELECT * FROM t ORDER BY id"]  # the table is read once
        ref = result.datasets["t"]
        assert ref.row_count == 20
        # code: integers in chunks 1-3, a word in chunk 4 -> text; ratio: integers then floats -> float;
        # at: a number among dates in the first chunk -> text from the start
        assert ref.columns == {"id": "integer", "code": "string", "ratio": "float", "at": "string"}
        rows = rows_of(result, "t", order_by="id")
        assert [r["code"] for r in rows] == [str(i * 10) if i != 17 else "x17" for i in range(1, 21)]
        assert [r["ratio"] for r in rows] == [i if i < 8 else i + 0.5 for i in range(1, 21)]
        assert [r["at"] for r in rows] == [f"2026-11-{i:02d}" if i != 3 else "3" for i in range(1, 21)]
        assert any("'code'" in line and "read once" in line for line in logged), logged
        assert not any("again" in line for line in logged), logged

    def test_empty_sqlite_result_keeps_the_column_names_as_text(
        self, staging_root: str, sqlite_events: sa.Engine
    ) -> None:
        source = {"name": "none", "type": "sql", "conn_id": "c", "query": "SELECT id, kind FROM events WHERE id < 0"}

        result = extract(staging_root, [source], sql_engine=lambda _c: sqlite_events, expected_row_count_min=0)

        assert result.datasets["none"].row_count == 0
        assert result.datasets["none"].columns == {"id": "string", "kind": "string"}
        assert result.metrics["warnings"] == ["none: returned 0 rows (allowed: expected_row_count_min is 0)"]

    def test_postgres_query_streams_through_copy_with_its_column_types(self, staging_root: str, pg_url: str) -> None:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE orders (id int, total numeric(10,2), ratio float8, paid bool, day date,"
                " at timestamp, at_tz timestamptz, note text, meta jsonb)"
            )
            conn.exec_driver_sql(
                "INSERT INTO orders VALUES"
                " (1, 12.50, 0.25, true, '2026-11-09', '2026-11-09 08:30:00.5', '2026-11-09 10:00:00+02',"
                "  'a, \"quoted\"\nsecond line', '{\"k\": 1}'),"
                " (2, NULL, NULL, false, NULL, NULL, NULL, '', NULL),"
                " (3, 7.00, 1.5, NULL, '2026-11-10', '2026-11-10 00:00:00', '2026-11-10 00:00:00+00', 'NULL', '[1]')"
            )
            conn.exec_driver_sql(
                "INSERT INTO orders SELECT g, g, g, true, NULL, NULL, NULL, 'x' FROM generate_series(4, 10) g"
            )
        source = {
            "name": "orders",
            "type": "sql",
            "conn_id": "pg",
            "query": "SELECT * FROM orders WHERE id <= :last AND note <> '%%never%%' ORDER BY id;",
            "parameters": {"last": 9},
            "chunk_size": 4,
        }

        result = extract(staging_root, [source], sql_engine=lambda _c: engine)

        ref = result.datasets["orders"]
        assert ref.row_count == 9
        assert len(parts(result, "orders")) == 3
        assert ref.columns == {
            "id": "integer",
            "total": "float",
            "ratio": "float",
            "paid": "boolean",
            "day": "date",
            "at": "timestamp",
            "at_tz": "timestamp",
            "note": "string",
            "meta": "string",
        }
        table = pq.read_table(parts(result, "orders")[0])
        assert table.schema.field("total").type == pa.decimal128(10, 2)
        first, second, third = table.to_pylist()[:3]
        assert first["total"] == Decimal("12.50") and first["paid"] is True
        assert first["day"] == date(2026, 11, 9)
        assert first["at"] == datetime(2026, 11, 9, 8, 30, 0, 500000)
        assert first["at_tz"] == datetime(2026, 11, 9, 8, 0, tzinfo=timezone.utc)
        assert first["note"] == 'a, "quoted"\nsecond line'
        assert json.loads(first["meta"]) == {"k": 1}
        assert second["note"] == "" and second["total"] is None and second["meta"] is None
        assert third["note"] == "NULL" and third["paid"] is None

    def test_postgres_value_copy_cannot_parse_falls_back_to_rows(self, staging_root: str, pg_url: str) -> None:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE m (id int, v numeric(6,2))")
            conn.exec_driver_sql("INSERT INTO m VALUES (1, 1.25), (2, 'NaN'), (3, NULL)")
        source = {"name": "m", "type": "sql", "conn_id": "pg", "query": "SELECT * FROM m ORDER BY id"}

        result = extract(staging_root, [source], sql_engine=lambda _c: engine)

        assert result.datasets["m"].row_count == 3
        assert [r["v"] for r in rows_of(result, "m", order_by="id")] == ["1.25", "NaN", None]

    def test_postgres_error_in_the_middle_of_copy_is_the_database_error(self, staging_root: str, pg_url: str) -> None:
        engine = sa.create_engine(pg_url)
        source = {
            "name": "ratio",
            "type": "sql",
            "conn_id": "pg",
            "query": "SELECT g, 1 / (g - 5000) AS r FROM generate_series(1, 10000) g",
            "chunk_size": 1000,
        }

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [source], sql_engine=lambda _c: engine)

        assert raised(excinfo) == ("ratio", "query failed: division by zero")
        with engine.connect() as conn:  # the pool hands out a healthy connection afterwards
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1

    def test_postgres_empty_result_keeps_typed_columns(self, staging_root: str, pg_url: str) -> None:
        engine = sa.create_engine(pg_url)
        source = {"name": "e", "type": "sql", "conn_id": "pg", "query": "SELECT 1::int AS id, now() AS at WHERE false"}

        result = extract(staging_root, [source], sql_engine=lambda _c: engine, expected_row_count_min=0)

        assert result.datasets["e"].row_count == 0
        assert result.datasets["e"].columns == {"id": "integer", "at": "timestamp"}

    @pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
    def test_bad_sql_raises_the_database_error_for_the_source(
        self, staging_root: str, sqlite_url: str, pg_url: str, dialect: str
    ) -> None:
        engine = sa.create_engine(sqlite_url if dialect == "sqlite" else pg_url)
        source = {"name": "broken", "type": "sql", "conn_id": "c", "query": "SELECT * FROM no_such_table"}

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [source], sql_engine=lambda _c: engine)

        name, cause = raised(excinfo)
        assert name == "broken"
        assert cause.startswith("query failed: ")
        assert "no_such_table" in cause
        assert "[SQL:" not in cause

    def test_unreachable_database_error_hides_the_password(self, staging_root: str) -> None:
        engine = sa.create_engine("postgresql+psycopg2://etl:s3cr3t-pw@127.0.0.1:1/warehouse")
        source = {"name": "events", "type": "sql", "conn_id": "c", "query": "SELECT 1"}

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [source], sql_engine=lambda _c: engine)

        assert excinfo.value.cause.startswith("cannot connect to the database: ")
        assert "s3cr3t-pw" not in str(excinfo.value)
        assert excinfo.value.__cause__ is not None

    def test_missing_bind_parameter_is_named(self, staging_root: str, sqlite_events: sa.Engine) -> None:
        source = {"name": "events", "type": "sql", "conn_id": "c", "query": "SELECT * FROM events WHERE id > :after"}

        with pytest.raises(SourceError, match="after"):
            extract(staging_root, [source], sql_engine=lambda _c: sqlite_events)

    @pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
    def test_duplicate_column_names_ask_for_aliases(
        self, staging_root: str, sqlite_url: str, pg_url: str, dialect: str
    ) -> None:
        engine = sa.create_engine(sqlite_url if dialect == "sqlite" else pg_url)
        source = {"name": "joined", "type": "sql", "conn_id": "c", "query": "SELECT 1 AS id, 2 AS id"}

        with pytest.raises(SourceError, match="column 'id' more than once"):
            extract(staging_root, [source], sql_engine=lambda _c: engine)

    def test_connection_that_cannot_be_resolved_names_it(self, staging_root: str) -> None:
        def no_connection(conn_id: str) -> sa.Engine:
            raise KeyError(f"The conn_id `{conn_id}` isn't defined")

        source = {"name": "events", "type": "sql", "conn_id": "nope", "query": "SELECT 1"}
        with pytest.raises(SourceError, match="cannot use connection 'nope'"):
            extract(staging_root, [source], sql_engine=no_connection)


# ---- HTTP ------------------------------------------------------------------------------------


class TestHttpSources:
    def test_records_path_points_into_the_body_and_nested_objects_stay_structs(
        self, api: Api, staging_root: str
    ) -> None:
        records = [{"id": 1, "address": {"city": "Oslo"}}, {"id": 2, "address": {"city": "Lima", "zip": "15001"}}]
        api.route("/v1/users", Reply({"data": {"items": records}, "meta": {}}))

        result = http(api, staging_root, [{"name": "users", "endpoint": "/v1/users", "records_path": "data.items"}])

        rows = rows_of(result, "users", order_by="id")
        assert [r["id"] for r in rows] == [1, 2]
        assert rows[0]["address"] == {"city": "Oslo", "zip": None}
        assert rows[1]["address"] == {"city": "Lima", "zip": "15001"}
        assert result.metrics["per_source"]["users"] == {
            "rows": 2,
            "duration_s": result.metrics["per_source"]["users"]["duration_s"],
            "type": "http",
            "pages": 1,
        }

    def test_page_pagination_walks_until_an_empty_page(self, api: Api, staging_root: str) -> None:
        pages = {1: users(1, 3), 2: users(4, 3), 3: users(7, 1)}
        api.route("/users", lambda q, _n: Reply(pages.get(int(q["page"]), [])))
        source = {
            "name": "users",
            "endpoint": "users",
            "params": {"active": "1"},
            "pagination": {"style": "page", "size_param": "per_page", "page_size": 3},
            "chunk_size": 2,
        }

        result = http(api, staging_root, [source])

        assert [r["id"] for r in rows_of(result, "users", order_by="id")] == list(range(1, 8))
        assert [c.query for c in api.calls_to("/users")] == [
            {"active": "1", "page": str(p), "per_page": "3"} for p in (1, 2, 3, 4)
        ]
        assert result.metrics["per_source"]["users"]["pages"] == 4
        assert len(parts(result, "users")) == 4

    def test_cursor_pagination_follows_the_cursor_in_the_body(self, api: Api, staging_root: str) -> None:
        chain = {"": ("c1", users(1, 2)), "c1": ("c2", users(3, 2)), "c2": (None, users(5, 1))}

        def page(query: dict[str, str], _n: int) -> Reply:
            nxt, items = chain[query.get("after", "")]
            return Reply({"items": items, "paging": {"next": nxt}})

        api.route("/events", page)
        source = {
            "name": "events",
            "endpoint": "/events",
            "records_path": "items",
            "pagination": {"style": "cursor", "cursor_param": "after", "cursor_path": "paging.next"},
        }

        result = http(api, staging_root, [source])

        assert result.datasets["events"].row_count == 5
        assert [c.query.get("after") for c in api.calls_to("/events")] == [None, "c1", "c2"]

    @pytest.mark.parametrize("where", ["body_relative", "body_absolute", "link_header"])
    def test_next_link_pagination_follows_relative_absolute_and_header_links(
        self, api: Api, staging_root: str, where: str
    ) -> None:
        def page(query: dict[str, str], _n: int) -> Reply:
            start = int(query.get("from", "1"))
            nxt = f"/api/items?from={start + 2}" if start < 5 else None
            if nxt and where == "body_absolute":
                nxt = api.base_url + nxt
            if where == "link_header":
                headers = {"Link": f'<{nxt}>; rel="next"'} if nxt else {}
                return Reply(users(start, 2), headers=headers)
            return Reply({"results": users(start, 2), "next": nxt})

        api.route("/api/items", page)
        source: dict[str, Any] = {"name": "items", "endpoint": "/api/items", "pagination": {"style": "next_link"}}
        if where != "link_header":
            source |= {"records_path": "results", "pagination": {"style": "next_link", "next_link_path": "next"}}

        result = http(api, staging_root, [source])

        assert [r["id"] for r in rows_of(result, "items", order_by="id")] == [1, 2, 3, 4, 5, 6]
        assert result.metrics["per_source"]["items"]["pages"] == 3

    def test_connection_headers_and_auth_are_sent_and_source_headers_win(self, api: Api, staging_root: str) -> None:
        api.route("/me", Reply([{"id": 1}]))
        endpoint = api.endpoint(headers={"X-Team": "data", "X-Env": "conn"}, auth=("etl", "pw"))
        sources = [{"name": "me", "type": "http", "endpoint": "/me", "headers": {"X-Env": "source"}}]

        extract_sources(parse_sources(sources), dataset_uri=lambda n: f"{staging_root}/{n}", http_endpoint=endpoint)

        sent = api.calls_to("/me")[0].headers
        assert sent["X-Team"] == "data" and sent["X-Env"] == "source"
        assert sent["Authorization"].startswith("Basic ")

    def test_server_error_then_success_is_retried(self, api: Api, staging_root: str) -> None:
        api.route("/flaky", lambda _q, n: Reply({"error": "busy"}, status=500) if n == 1 else Reply(users(1, 4)))

        result = http(api, staging_root, [{"name": "flaky", "endpoint": "/flaky"}])

        assert result.datasets["flaky"].row_count == 4
        assert len(api.calls_to("/flaky")) == 2

    def test_rate_limit_honours_retry_after(self, api: Api, staging_root: str) -> None:
        replies = {1: Reply({}, status=429, headers={"Retry-After": "0.3"}), 2: Reply(users(1, 1))}
        api.route("/limited", lambda _q, n: replies[n])

        started = time.monotonic()
        result = http(api, staging_root, [{"name": "limited", "endpoint": "/limited"}])

        assert result.datasets["limited"].row_count == 1
        assert time.monotonic() - started >= 0.3

    def test_server_error_that_persists_fails_with_status_and_path_but_no_query(
        self, api: Api, staging_root: str
    ) -> None:
        api.route("/down", Reply({"error": "maintenance"}, status=500))
        source = {"name": "down", "endpoint": "/down", "params": {"api_key": "k-123-secret"}, "max_retries": 2}

        with pytest.raises(SourceError) as excinfo:
            http(api, staging_root, [source])

        name, cause = raised(excinfo)
        assert name == "down"
        assert cause.startswith("HTTP 500 Internal Server Error from GET /down after 3 attempts")
        assert "maintenance" in cause
        assert "k-123-secret" not in str(excinfo.value)
        assert len(api.calls_to("/down")) == 3

    def test_client_error_is_not_retried(self, api: Api, staging_root: str) -> None:
        api.route("/secret", Reply({"error": "bad token"}, status=401))

        with pytest.raises(SourceError, match=r"^source 'secret': HTTP 401 Unauthorized from GET /secret: "):
            http(api, staging_root, [{"name": "secret", "endpoint": "/secret"}])
        assert len(api.calls_to("/secret")) == 1

    def test_slow_response_times_out(self, api: Api, staging_root: str) -> None:
        api.route("/slow", Reply(users(1, 1), delay=1.5))
        source = {"name": "slow", "endpoint": "/slow", "timeout_s": 0.2, "max_retries": 1}

        with pytest.raises(SourceError) as excinfo:
            http(api, staging_root, [source])

        assert excinfo.value.cause == "GET /slow timed out after 0.2 s (2 attempts)"

    def test_unreachable_host_is_a_source_error(self, staging_root: str) -> None:
        sources = parse_sources([{"name": "gone", "type": "http", "endpoint": "/x", "max_retries": 0}])

        with pytest.raises(SourceError, match=r"cannot connect to http://127\.0\.0\.1:1 \(.*refused"):
            extract_sources(
                sources,
                dataset_uri=lambda n: f"{staging_root}/{n}",
                http_endpoint=lambda _c: HttpEndpoint("http://127.0.0.1:1"),
            )

    def test_cursor_that_comes_back_is_a_pagination_loop(self, api: Api, staging_root: str) -> None:
        api.route("/loop", lambda _q, n: Reply({"items": users(n, 1), "next": "A"}))
        source = {
            "name": "loop",
            "endpoint": "/loop",
            "records_path": "items",
            "pagination": {"style": "cursor", "cursor_param": "c", "cursor_path": "next"},
        }

        with pytest.raises(SourceError, match=r"pagination loops: after page 2, cursor 'A' came back"):
            http(api, staging_root, [source])
        assert len(api.calls_to("/loop")) == 2

    def test_next_link_back_to_a_fetched_page_is_a_pagination_loop(self, api: Api, staging_root: str) -> None:
        links = {"1": "/p?n=2", "2": "/p?n=1"}
        api.route("/p", lambda q, _n: Reply({"rows": users(1, 1), "next": links[q["n"]]}))
        source = {
            "name": "p",
            "endpoint": "/p?n=1",
            "records_path": "rows",
            "pagination": {"style": "next_link", "next_link_path": "next"},
        }

        with pytest.raises(SourceError, match="pagination loops: after page 2, the next link to /p points"):
            http(api, staging_root, [source])

    def test_api_that_ignores_the_page_parameter_is_a_pagination_loop(self, api: Api, staging_root: str) -> None:
        api.route("/same", Reply(users(1, 2)))
        source = {"name": "same", "endpoint": "/same", "pagination": {"style": "page"}}

        with pytest.raises(SourceError, match="page 2 returned the same records as the page before"):
            http(api, staging_root, [source])

    def test_max_pages_stops_with_a_warning(self, api: Api, staging_root: str) -> None:
        api.route("/many", lambda q, _n: Reply(users(int(q["page"]) * 10, 1)))
        source = {"name": "many", "endpoint": "/many", "pagination": {"style": "page", "max_pages": 3}}

        result = http(api, staging_root, [source])

        assert result.datasets["many"].row_count == 3
        assert result.warnings == ["many: stopped after max_pages=3; the API had more pages"]

    def test_json_object_where_records_were_expected_names_its_keys(self, api: Api, staging_root: str) -> None:
        api.route("/wrapped", Reply({"data": users(1, 2), "total": 2}))

        with pytest.raises(SourceError) as excinfo:
            http(api, staging_root, [{"name": "wrapped", "endpoint": "/wrapped"}])

        assert excinfo.value.cause == (
            "expected a JSON array of records at the top level of GET /wrapped, found an object with keys "
            "data, total; set records_path to the key that holds the list"
        )

    def test_records_path_missing_from_the_body(self, api: Api, staging_root: str) -> None:
        api.route("/x", Reply({"results": []}))

        with pytest.raises(SourceError, match=r"records_path 'data' is not in the response of GET /x \(top-level"):
            http(api, staging_root, [{"name": "x", "endpoint": "/x", "records_path": "data"}])

    def test_html_instead_of_json_is_reported(self, api: Api, staging_root: str) -> None:
        api.route("/login", Reply(raw=b"<html>please sign in</html>"))

        with pytest.raises(SourceError, match=r"the response of GET /login is not JSON \(text/html\)"):
            http(api, staging_root, [{"name": "login", "endpoint": "/login"}])

    def test_field_that_first_appears_on_a_later_page_is_kept(self, api: Api, staging_root: str) -> None:
        pages = {1: users(1, 2), 2: [{"id": 3, "name": "late", "tier": "gold"}]}
        api.route("/u", lambda q, _n: Reply(pages.get(int(q["page"]), [])))
        source = {"name": "u", "endpoint": "/u", "pagination": {"style": "page"}, "chunk_size": 1}

        result = http(api, staging_root, [source])

        rows = rows_of(result, "u", order_by="id")
        assert [r["tier"] for r in rows] == [None, None, "gold"]

    def test_api_with_no_records_is_below_the_minimum(self, api: Api, staging_root: str) -> None:
        api.route("/empty", Reply([]))

        with pytest.raises(RowCountTooLow) as excinfo:
            http(api, staging_root, [{"name": "empty", "endpoint": "/empty"}])

        assert excinfo.value.cause == (
            "returned 0 rows; expected at least 1 — set expected_row_count_min=0 to allow empty sources"
        )


# ---- files -----------------------------------------------------------------------------------


def file_source(path: Path | str, **kwargs: Any) -> dict[str, Any]:
    return {"name": kwargs.pop("name", "data"), "type": "file", "path": str(path), **kwargs}


class TestFileSources:
    def test_csv_is_sniffed_and_staged_in_chunks(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "events.csv"
        lines = ["id,kind,amount,at"] + [f"{i},k{i % 3},{i / 4},2026-11-0{1 + i % 9} 10:00:00" for i in range(1, 26)]
        path.write_text("\n".join(lines) + "\n")

        result = extract(staging_root, [file_source(path, chunk_size=10)])

        ref = result.datasets["data"]
        assert ref.row_count == 25
        assert ref.columns == {"id": "integer", "kind": "string", "amount": "float", "at": "timestamp"}
        assert len(parts(result, "data")) == 3
        assert rows_of(result, "data", order_by="id")[3] == {
            "id": 4,
            "kind": "k1",
            "amount": 1.0,
            "at": datetime(2026, 11, 5, 10),
        }

    def test_csv_with_another_delimiter_and_a_file_uri(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "semi.csv"
        path.write_text('name;city\n"Doe; Jane";Oslo\nRoe;Lima\n')

        result = extract(staging_root, [file_source(f"file://{path}", delimiter=";")])

        assert rows_of(result, "data", order_by="name") == [
            {"name": "Doe; Jane", "city": "Oslo"},
            {"name": "Roe", "city": "Lima"},
        ]

    def test_parquet_is_streamed_by_chunks(self, tmp_path: Path, staging_root: str) -> None:
        table = pa.table({"id": list(range(1000)), "label": [f"x{i}" for i in range(1000)]})
        pq.write_table(table, tmp_path / "t.parquet", row_group_size=300)

        result = extract(staging_root, [file_source(tmp_path / "t.parquet", chunk_size=400)])

        assert result.datasets["data"].row_count == 1000
        assert len(parts(result, "data")) == 3
        staged = pa.concat_tables(pq.read_table(p) for p in parts(result, "data")).sort_by("id")
        assert staged.column("label").to_pylist() == table.column("label").to_pylist()

    @pytest.mark.parametrize("fmt", ["json", "jsonl"])
    def test_json_array_and_json_lines(self, tmp_path: Path, staging_root: str, fmt: str) -> None:
        records = [{"id": 1, "tags": ["a"], "who": {"n": "x"}}, {"id": 2, "tags": [], "who": {"n": "y"}, "extra": 1.5}]
        text = json.dumps(records) if fmt == "json" else "\n".join(json.dumps(r) for r in records) + "\n"
        path = tmp_path / f"r.{fmt}"
        path.write_text(text)

        result = extract(staging_root, [file_source(path)])

        rows = rows_of(result, "data", order_by="id")
        assert [r["id"] for r in rows] == [1, 2]
        assert [r["extra"] for r in rows] == [None, 1.5]
        assert rows[0]["who"] == {"n": "x"} and list(rows[0]["tags"]) == ["a"]

    def test_json_lines_with_a_byte_order_mark(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "bom.jsonl"
        path.write_bytes(codecs.BOM_UTF8 + b'{"id": 1, "city": "Z\xc3\xbcrich"}\n{"id": 2, "city": "Oslo"}\n')

        result = extract(staging_root, [file_source(path)])

        assert rows_of(result, "data", order_by="id") == [{"id": 1, "city": "Zürich"}, {"id": 2, "city": "Oslo"}]

    def test_object_store_uri_is_read_through_fsspec(self, staging_root: str) -> None:
        import fsspec

        memory = fsspec.filesystem("memory")
        with memory.open("/bucket/extract-test/users.csv", "wb") as handle:
            handle.write(b"id,name\n1,ann\n2,bob\n")

        result = extract(staging_root, [file_source("memory://bucket/extract-test/users.csv")])

        assert rows_of(result, "data", order_by="id") == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]

    def test_missing_file(self, tmp_path: Path, staging_root: str) -> None:
        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [file_source(tmp_path / "nope.csv", name="campaigns")])

        assert raised(excinfo) == ("campaigns", f"file not found: {tmp_path / 'nope.csv'}")

    @pytest.mark.parametrize(
        ("good_rows", "bad_line"),
        [pytest.param(2, "3,z,1.5,extra", id="in-sniffed-sample"), pytest.param(30_000, "3,z,1.5,extra", id="later")],
    )
    def test_malformed_csv_line_is_reported_with_its_line_number(
        self, tmp_path: Path, staging_root: str, good_rows: int, bad_line: str
    ) -> None:
        path = tmp_path / "bad.csv"
        body = "".join(f"{i},x,{i}.5\n" for i in range(good_rows))
        path.write_text(f"id,name,score\n{body}{bad_line}\n4,w,2.5\n")

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [file_source(path)])

        assert excinfo.value.cause.startswith(f"malformed CSV at line {good_rows + 2}: expected 3 columns"), (
            excinfo.value.cause
        )
        assert "found 4" in excinfo.value.cause or "got 4" in excinfo.value.cause

    def test_broken_jsonl_line_is_reported_with_its_line_number(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "e.jsonl"
        path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3,\n{"id": 4}\n')

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [file_source(path)])

        assert excinfo.value.cause.startswith("broken JSON on line 3: ")

    def test_json_object_instead_of_an_array(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "o.json"
        path.write_text(json.dumps({"data": [{"id": 1}]}))

        with pytest.raises(SourceError, match="expected a JSON array of records, but the file holds a JSON object"):
            extract(staging_root, [file_source(path)])

    def test_wrong_encoding_is_an_error_not_mojibake(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "latin.csv"
        path.write_bytes("name,city\nJosé,Zürich\n".encode("latin-1"))

        with pytest.raises(SourceError) as excinfo:
            extract(staging_root, [file_source(path)])
        assert excinfo.value.cause.startswith("the file is not valid utf-8 text (first bad bytes on line 2)")

        result = extract(staging_root, [file_source(path, encoding="latin-1")])
        assert rows_of(result, "data") == [{"name": "José", "city": "Zürich"}]

    def test_encoding_duckdb_lacks_is_transcoded(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "win.jsonl"
        path.write_bytes('{"quote": "“cp1252” – ok"}\n'.encode("cp1252"))

        result = extract(staging_root, [file_source(path, encoding="cp1252")])
        assert rows_of(result, "data") == [{"quote": "“cp1252” – ok"}]

        with pytest.raises(SourceError, match=r"not valid ascii text \(first bad bytes on line 1\)"):
            extract(staging_root, [file_source(path, encoding="ascii")])

    def test_header_only_csv_is_empty_with_its_columns(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "h.csv"
        path.write_text("id,name\n")

        result = extract(staging_root, [file_source(path, expected_row_count_min=0)])
        assert result.datasets["data"].row_count == 0
        assert result.datasets["data"].columns == {"id": "string", "name": "string"}

        with pytest.raises(RowCountTooLow, match="returned 0 rows; expected at least 1"):
            extract(staging_root, [file_source(path)])

    @pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
    def test_empty_file_is_below_the_minimum(self, tmp_path: Path, staging_root: str, fmt: str) -> None:
        path = tmp_path / f"empty.{fmt}"
        path.write_bytes(b"")

        with pytest.raises(RowCountTooLow) as excinfo:
            extract(staging_root, [file_source(path)])
        assert excinfo.value.source == "data"
        assert "set expected_row_count_min=0 to allow empty sources" in excinfo.value.cause

    def test_empty_file_allowed_by_the_minimum_still_has_no_columns_to_stage(
        self, tmp_path: Path, staging_root: str
    ) -> None:
        path = tmp_path / "empty.jsonl"
        path.write_bytes(b"")

        with pytest.raises(SourceError, match="no records and no column names"):
            extract(staging_root, [file_source(path)], expected_row_count_min=0)

    def test_value_after_the_sniffed_sample_widens_the_type(self, tmp_path: Path, staging_root: str) -> None:
        path = tmp_path / "late.csv"
        path.write_text("id,code\n" + "".join(f"{i},{i}\n" for i in range(25_000)) + "25000,A-1\n")

        result = extract(staging_root, [file_source(path)])

        assert result.datasets["data"].row_count == 25_001
        assert result.datasets["data"].columns == {"id": "integer", "code": "string"}

    def test_folder_instead_of_a_file(self, tmp_path: Path, staging_root: str) -> None:
        with pytest.raises(SourceError, match="is a folder; give a file or a glob pattern"):
            extract(staging_root, [file_source(tmp_path, format="csv")])

    def test_glob_reads_every_matching_file(self, tmp_path: Path, staging_root: str) -> None:
        for day in (1, 2):
            (tmp_path / f"day{day}.csv").write_text(f"id\n{day}\n{day + 10}\n")

        result = extract(staging_root, [file_source(tmp_path / "day*.csv")])

        assert sorted(r["id"] for r in rows_of(result, "data")) == [1, 2, 11, 12]


# ---- the stage as a whole --------------------------------------------------------------------


class TestConcurrency:
    def test_four_sources_are_in_flight_at_the_same_time(self, api: Api, staging_root: str) -> None:
        # Each request is answered only once all four have arrived: run one after another, the
        # first would wait alone, give up and fail its source. (Speed is measured in benchmarks/.)
        meeting = threading.Barrier(4, timeout=10)

        def together(_query: dict[str, str], _number: int) -> Reply:
            try:
                meeting.wait()
            except threading.BrokenBarrierError:
                return Reply({"error": "the other sources never arrived"}, status=400)
            return Reply(users(1, 2))

        api.route("/meet", together)
        sources = [{"name": f"s{i}", "endpoint": "/meet"} for i in range(4)]

        result = http(api, staging_root, sources, max_workers=4)

        assert result.metrics["sources_extracted"] == ["s0", "s1", "s2", "s3"]
        assert result.metrics["total_rows"] == 8

    def test_first_failing_source_in_order_is_raised_and_the_others_stop(self, api: Api, staging_root: str) -> None:
        api.route("/late-fail", Reply({}, status=404, delay=0.4))
        api.route("/early-fail", Reply({}, status=400))
        api.route("/busy", Reply({}, status=503, headers={"Retry-After": "20"}))
        sources = [
            {"name": "first", "endpoint": "/late-fail"},
            {"name": "second", "endpoint": "/early-fail"},
            {"name": "patient", "endpoint": "/busy", "max_retries": 5},
        ]

        started = time.monotonic()
        with pytest.raises(SourceError) as excinfo:
            http(api, staging_root, sources, max_workers=3)

        assert excinfo.value.source == "first"
        assert time.monotonic() - started < 5, "the source waiting to retry was not stopped"
        assert len(api.calls_to("/busy")) == 1

    def test_source_stopped_while_staging_does_not_hide_the_failure(self, api: Api, staging_root: str) -> None:
        # "first" is still downloading when "second" fails; it is stopped as it starts staging
        # its records, and that stop must not be reported as a failure of "first".
        api.route("/slow", Reply(users(1, 3), delay=0.4))
        api.route("/fails", Reply({}, status=400))
        sources = [{"name": "first", "endpoint": "/slow"}, {"name": "second", "endpoint": "/fails"}]

        with pytest.raises(SourceError) as excinfo:
            http(api, staging_root, sources, max_workers=2)

        assert excinfo.value.source == "second"
        assert "HTTP 400" in excinfo.value.cause


class TestStageResult:
    def test_metrics_keep_the_seed_field_names(
        self, tmp_path: Path, staging_root: str, sqlite_events: sa.Engine
    ) -> None:
        (tmp_path / "c.csv").write_text("code,budget\nspring,10\nfall,20\n")
        sources = [
            {"name": "events", "type": "sql", "conn_id": "c", "query": "SELECT id, kind FROM events"},
            file_source(tmp_path / "c.csv", name="campaigns"),
        ]

        result = extract(staging_root, sources, sql_engine=lambda _c: sqlite_events)

        assert result.stage == "extract" and result.status == "success"
        metrics = result.metrics
        assert metrics["sources_extracted"] == ["events", "campaigns"]
        assert metrics["total_rows"] == 27
        assert metrics["columns"] == {
            "events": {"id": "integer", "kind": "string"},
            "campaigns": {"code": "string", "budget": "integer"},
        }
        assert metrics["data_location"] == {n: result.datasets[n].uri for n in ("events", "campaigns")}
        assert metrics["source_checksums"] == {n: result.datasets[n].checksum for n in ("events", "campaigns")}
        assert metrics["extraction_duration_seconds"] >= 0
        assert metrics["per_source"]["campaigns"]["type"] == "file"
        assert metrics["per_source"]["events"]["rows"] == 25
        assert "warnings" not in metrics
        assert StageResult.from_xcom(json.loads(json.dumps(result.to_xcom()))) == result

    def test_checksums_match_across_extractions_of_the_same_data(
        self, tmp_path: Path, staging_root: str, sqlite_events: sa.Engine
    ) -> None:
        sql = {"name": "events", "type": "sql", "conn_id": "c", "query": "SELECT * FROM events ORDER BY id"}
        first = extract(f"{staging_root}/a", [{**sql, "chunk_size": 7}], sql_engine=lambda _c: sqlite_events)
        again = extract(f"{staging_root}/b", [sql], sql_engine=lambda _c: sqlite_events)
        with sqlite_events.begin() as conn:
            conn.exec_driver_sql("UPDATE events SET amount = amount + 1 WHERE id = 3")
        changed = extract(f"{staging_root}/c", [sql], sql_engine=lambda _c: sqlite_events)

        assert first.metrics["source_checksums"] == again.metrics["source_checksums"]
        assert changed.metrics["source_checksums"] != first.metrics["source_checksums"]


class TestRowCountMinimum:
    def test_source_minimum_overrides_the_stage_minimum(self, staging_root: str, sqlite_events: sa.Engine) -> None:
        empty = {"name": "none", "type": "sql", "conn_id": "c", "query": "SELECT * FROM events WHERE 0"}

        result = extract(staging_root, [{**empty, "expected_row_count_min": 0}], sql_engine=lambda _c: sqlite_events)
        assert result.datasets["none"].row_count == 0
        assert result.warnings == ["none: returned 0 rows (allowed: expected_row_count_min is 0)"]

        with pytest.raises(RowCountTooLow) as excinfo:
            extract(staging_root, [empty], sql_engine=lambda _c: sqlite_events)
        assert raised(excinfo) == (
            "none",
            "returned 0 rows; expected at least 1 — set expected_row_count_min=0 to allow empty sources",
        )

    def test_too_few_rows_names_both_counts(self, staging_root: str, sqlite_events: sa.Engine) -> None:
        source = {"name": "events", "type": "sql", "conn_id": "c", "query": "SELECT * FROM events"}

        with pytest.raises(RowCountTooLow, match=r"^source 'events': returned 25 rows; expected at least 100$"):
            extract(staging_root, [source], sql_engine=lambda _c: sqlite_events, expected_row_count_min=100)

    def test_no_minimum_allows_empty_sources(self, staging_root: str, sqlite_events: sa.Engine) -> None:
        source = {"name": "none", "type": "sql", "conn_id": "c", "query": "SELECT * FROM events WHERE 0"}

        result = extract(staging_root, [source], sql_engine=lambda _c: sqlite_events, expected_row_count_min=None)

        assert result.metrics["total_rows"] == 0


class TestArguments:
    @pytest.mark.parametrize(
        ("sources", "kwargs", "message"),
        [
            pytest.param([], {}, "at least one source", id="no-sources"),
            pytest.param(
                [{"name": "e", "type": "sql", "conn_id": "c", "query": "SELECT 1"}], {}, "no sql_engine", id="no-engine"
            ),
            pytest.param([{"name": "u", "type": "http"}], {}, "no http_endpoint", id="no-endpoint"),
            pytest.param(
                [{"name": "u", "type": "http", "pagination": {"style": "cursor"}}],
                {"http_endpoint": lambda _c: HttpEndpoint("http://x")},
                "cursor pagination needs cursor_path",
                id="cursor-without-path",
            ),
            pytest.param(
                [{"name": "f", "type": "file", "path": "f.csv", "encoding": "klingon"}],
                {},
                "unknown encoding 'klingon'",
                id="unknown-encoding",
            ),
            pytest.param(
                [{"name": "f", "type": "file", "path": "f.csv"}], {"max_workers": 0}, "max_workers", id="no-workers"
            ),
        ],
    )
    def test_bad_arguments_raise_value_error_before_anything_runs(
        self, staging_root: str, sources: list[dict[str, Any]], kwargs: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            extract(staging_root, sources, **kwargs)

    def test_unparsed_dicts_are_a_type_error(self, staging_root: str) -> None:
        with pytest.raises(TypeError, match="parse_sources"):
            extract_sources(
                [{"name": "f", "type": "file", "path": "f.csv"}],  # type: ignore[list-item]
                dataset_uri=lambda n: f"{staging_root}/{n}",
            )


class TestRowValuesToArrow:
    """The SQL row path builds Arrow arrays without ``pyarrow.array`` (which imports pandas to inspect a list)."""

    @pytest.mark.parametrize(
        "values",
        [
            [1, None, 3],
            [1, 2.5, None],
            [True, None, False],
            ["a", None, "é", ""],
            ["ß€😀", "", None, "x😀", "plain"],
            [b"x", None, b""],
            [date(2026, 11, 9), None],
            [datetime(2026, 11, 9, 8, 30, 0, 500000), None],
            [Decimal("12.50"), Decimal("7"), None],
            [None, None],
        ],
    )
    def test_types_and_values_match_pyarrow_inference(self, values: list[Any]) -> None:
        from airflow_agent_provider.engines.sources.values import column_array

        built = column_array(values)

        assert built is not None
        expected = pa.array(values)
        assert built.type == expected.type or (pa.types.is_decimal(built.type) and pa.types.is_decimal(expected.type))
        assert built.to_pylist() == expected.to_pylist()

    def test_aware_timestamps_are_utc_and_mixes_are_text(self) -> None:
        from datetime import timedelta

        from airflow_agent_provider.engines.sources.values import column_array, text_array

        plus_two = timezone(timedelta(hours=2))
        aware = column_array([datetime(2026, 11, 9, 10, tzinfo=plus_two), None])
        assert aware is not None and aware.type == pa.timestamp("us", tz="UTC")
        assert aware.to_pylist()[0] == datetime(2026, 11, 9, 8, tzinfo=timezone.utc)
        for mixed in ([1, "a"], [2**70], [{"k": 1}], [datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=timezone.utc)]):
            assert column_array(mixed) is None
        assert text_array([1, "a", None, b"\x01", {"k": 1}]).to_pylist() == ["1", "a", None, "01", '{"k": 1}']
