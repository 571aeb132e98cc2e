"""SQL from descriptions: the SQL gate, the plan cache, and the writer the transform engine calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.agents.calls import CallPolicy
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.plans import PlanCache, plan_key
from airflow_agent_provider.agents.sql import SqlWriter, check_sql
from airflow_agent_provider.contracts import Transformation
from airflow_agent_provider.exceptions import ModelCallError, UnsafeSQL
from airflow_agent_provider.testing import FakeClaude, Reply

TABLES = ["events", "users"]
SCHEMAS = {"events": {"user_id": "BIGINT", "amount": "DOUBLE"}, "users": {"user_id": "BIGINT", "country": "VARCHAR"}}
DAILY = Transformation(name="daily_totals", type="sql", description="Total amount per user and country.")
GOOD_SQL = "SELECT u.country, sum(e.amount) AS total FROM events e JOIN users u USING (user_id) GROUP BY 1"


class TestCheckSql:
    @pytest.mark.parametrize(
        "sql",
        [
            pytest.param(GOOD_SQL + ";", id="join-with-semicolon"),
            pytest.param("WITH t AS (SELECT * FROM events) SELECT count(*) FROM t", id="cte"),
            pytest.param("SELECT user_id FROM events UNION ALL SELECT user_id FROM users", id="union"),
            pytest.param('SELECT * FROM "Events" WHERE amount > 0', id="quoted-case-insensitive"),
            pytest.param("FROM events SELECT user_id", id="from-first"),
            pytest.param("SELECT * FROM events WHERE user_id IN (SELECT user_id FROM users)", id="subquery"),
            pytest.param("SELECT * FROM range(10)", id="allowed-table-function"),
            pytest.param("SELECT e.* FROM main.events AS e", id="schema-main"),
        ],
    )
    def test_accepts_one_read_only_query_over_the_staged_tables(self, sql: str) -> None:
        assert not check_sql(sql, TABLES).endswith(";")

    @pytest.mark.parametrize(
        ("sql", "why"),
        [
            pytest.param("SELECT 1; SELECT 2", "exactly one statement", id="two-statements"),
            pytest.param("SELECT * FROM events; DROP TABLE users", "exactly one statement", id="select-then-drop"),
            pytest.param("CREATE TABLE x AS SELECT * FROM events", "only a SELECT", id="ddl"),
            pytest.param("DELETE FROM events", "only a SELECT", id="dml"),
            pytest.param("COPY events TO '/tmp/out.csv'", "only a SELECT", id="copy"),
            pytest.param("ATTACH '/tmp/other.db' AS other", "only a SELECT", id="attach"),
            pytest.param("INSTALL httpfs", "only a SELECT", id="install"),
            pytest.param("LOAD httpfs", "only a SELECT", id="load"),
            pytest.param("PRAGMA version", "only a SELECT", id="pragma"),
            pytest.param("SET enable_external_access = true", "only a SELECT", id="set"),
            pytest.param("CALL pragma_version()", "only a SELECT", id="call"),
            pytest.param("SELECT * INTO copy_of_events FROM events", "INTO", id="select-into"),
            pytest.param("SELECT * FROM read_csv('/etc/passwd')", "read_csv", id="read-csv"),
            pytest.param("SELECT * FROM 'secrets.parquet'", "not one of the staged tables", id="file-literal"),
            pytest.param("SELECT read_text('/etc/hosts')", "read_text", id="read-text-scalar"),
            pytest.param("SELECT * FROM glob('/data/*')", "glob", id="glob"),
            pytest.param("SELECT * FROM parquet_scan('x.parquet')", "parquet_scan", id="scan"),
            pytest.param("SELECT getenv('ANTHROPIC_API_KEY')", "getenv", id="getenv"),
            pytest.param("SELECT * FROM query('SELECT 1')", "query", id="query-function"),
            pytest.param("SELECT * FROM other.main.events", "qualified", id="qualified"),
            pytest.param("SELECT * FROM secrets_table", "not one of the staged tables", id="unknown-table"),
            pytest.param("SELECT * FROM duckdb_settings()", "table function", id="table-function"),
            pytest.param("DESCRIBE events", "DESCRIBE", id="describe"),
            pytest.param("EXPORT DATABASE '/tmp/x'", "only a SELECT", id="export"),
            pytest.param("", "empty", id="empty"),
        ],
    )
    def test_refuses_anything_else_and_says_why(self, sql: str, why: str) -> None:
        with pytest.raises(UnsafeSQL, match=why):
            check_sql(sql, TABLES)


class TestPlanCache:
    def test_a_plan_round_trips_with_a_reviewable_header(self, tmp_path: Path) -> None:
        cache, description = PlanCache(tmp_path / "plans"), "Total amount\nper user."
        path = cache.put("daily_totals", description, SCHEMAS, GOOD_SQL, model="claude-sonnet-4-6")
        assert path.name == f"daily_totals-{plan_key(description, SCHEMAS)[:12]}.sql"
        header = path.read_text().splitlines()[:5]
        assert header[1] == "-- description: Total amount per user."
        assert header[3] == "-- model: claude-sonnet-4-6" and header[4].startswith("-- created: ")
        assert cache.get("daily_totals", description, SCHEMAS) == GOOD_SQL

    def test_the_key_changes_with_the_description_or_a_schema_not_with_order(self) -> None:
        reordered = {"users": dict(reversed(SCHEMAS["users"].items())), "events": SCHEMAS["events"]}
        retyped = {**SCHEMAS, "events": {"user_id": "BIGINT", "amount": "VARCHAR"}}
        assert plan_key("d", SCHEMAS) == plan_key("d", reordered)
        assert plan_key("d", SCHEMAS) != plan_key("d", retyped)
        assert plan_key("d", SCHEMAS) != plan_key("e", SCHEMAS)


def sql_answer(sql: str) -> Reply:
    return Reply.json({"sql": sql, "explanation": "totals"})


@pytest.fixture
def writer_for(client: Any, tmp_path: Path) -> Any:
    calls: list[int] = []

    def connect() -> Any:
        calls.append(1)
        return client

    def make() -> SqlWriter:
        return SqlWriter(Claude(connect, policy=CallPolicy(backoff_s=0.02)), cache=PlanCache(tmp_path / "plans"))

    make.connects = calls  # type: ignore[attr-defined]
    return make


class TestSqlWriter:
    def test_writes_checks_and_caches_then_a_second_run_costs_nothing(
        self, fake: FakeClaude, writer_for: Any, tmp_path: Path
    ) -> None:
        fake.add(sql_answer(GOOD_SQL + ";"), match={"schema_title": "SqlAnswer"})
        first = writer_for()
        assert first(DAILY, SCHEMAS) == GOOD_SQL
        assert first.usage.model_calls == 1 and len(list((tmp_path / "plans").glob("daily_totals-*.sql"))) == 1
        second = writer_for()
        assert second(DAILY, SCHEMAS) == GOOD_SQL
        assert len(fake.messages_requests) == 1 and second.usage.model_calls == 0
        assert second.cache_hits == ["daily_totals"] and len(writer_for.connects) == 1

    def test_a_changed_schema_makes_a_new_plan(self, fake: FakeClaude, writer_for: Any, tmp_path: Path) -> None:
        fake.set_default(sql_answer(GOOD_SQL))
        writer_for()(DAILY, SCHEMAS)
        writer_for()(DAILY, {**SCHEMAS, "users": {"user_id": "BIGINT", "country": "VARCHAR", "tier": "VARCHAR"}})
        assert len(fake.messages_requests) == 2
        assert len(list((tmp_path / "plans").glob("daily_totals-*.sql"))) == 2

    def test_the_prompt_quotes_the_schemas_as_data(self, fake: FakeClaude, writer_for: Any) -> None:
        fake.add(sql_answer(GOOD_SQL))
        writer_for()(DAILY, SCHEMAS)
        prompt = fake.messages_requests[0].json["messages"][0]["content"]
        assert "Total amount per user and country." in prompt
        assert '"events":{"user_id":"BIGINT","amount":"DOUBLE"}' in prompt.split("<data>")[1]

    @pytest.mark.parametrize(
        "unsafe",
        [
            pytest.param("SELECT * FROM read_csv('/etc/passwd')", id="file-read"),
            pytest.param("SELECT 1; DROP TABLE events", id="two-statements"),
            pytest.param("COPY (SELECT * FROM events) TO '/tmp/leak.csv'", id="copy"),
        ],
    )
    def test_unsafe_generated_sql_is_refused_and_not_cached(
        self, fake: FakeClaude, writer_for: Any, tmp_path: Path, unsafe: str
    ) -> None:
        fake.add(sql_answer(unsafe))
        writer = writer_for()
        with pytest.raises(UnsafeSQL):
            writer(DAILY, SCHEMAS)
        assert writer.usage.model_calls == 1
        assert not list((tmp_path / "plans").glob("*.sql"))

    def test_a_hand_edited_unsafe_plan_is_refused_before_it_runs(self, fake: FakeClaude, writer_for: Any) -> None:
        fake.add(sql_answer(GOOD_SQL))
        writer = writer_for()
        writer(DAILY, SCHEMAS)
        path = writer.cache.path(DAILY.name, DAILY.description, SCHEMAS)
        path.write_text(path.read_text().replace(GOOD_SQL, "ATTACH '/tmp/prod.db' AS prod"))
        with pytest.raises(UnsafeSQL):
            writer_for()(DAILY, SCHEMAS)
        assert len(fake.messages_requests) == 1

    def test_model_trouble_is_a_model_call_error_with_its_usage(self, fake: FakeClaude, writer_for: Any) -> None:
        fake.add(Reply.text("Here is your query: SELECT 1"))
        writer = writer_for()
        with pytest.raises(ModelCallError) as info:
            writer(DAILY, SCHEMAS)
        assert info.value.reason == "off_contract" and writer.usage.model_calls == 3
