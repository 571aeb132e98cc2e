"""The stage operators called directly: rendered inputs in, one engine call, StageResult JSON out.

Errors are checked here, where the raised exception can be read: bad input fails the task for good
(``StageFailed``), transient trouble (a database or an API down) is left to Airflow's retries.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.exceptions import SourceError
from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    StageFailed,
    TransformOperator,
    ValidateOperator,
)
from airflow_agent_provider.operators.extract import http_endpoint
from airflow_agent_provider.operators.load import snapshot_name
from tests.support.operators import Sources, direct_context, warehouse_tables


def _extract(staging_root: str, *sources: dict[str, Any], task_id: str = "extract") -> dict[str, Any]:
    op = ExtractOperator(task_id=task_id, sources=list(sources), staging_root=staging_root)
    return op.execute(direct_context(task_id))


def _file(name: str, path: Path) -> dict[str, Any]:
    return {"name": name, "type": "file", "path": str(path)}


class TestExtractOperator:
    def test_stages_each_source_and_returns_counts_not_rows(self, connections: Sources, staging_root: str) -> None:
        sql = {"name": "orders", "type": "sql", "conn_id": "op_source_db", "query": "SELECT * FROM orders"}
        result = _extract(staging_root, sql, _file("regions", connections.regions_csv))

        assert result["stage"] == "extract"
        assert result["status"] == "success"
        assert result["task_id"] == "extract"
        assert {n: d["row_count"] for n, d in result["datasets"].items()} == {"orders": 5, "regions": 3}
        assert result["metrics"]["total_rows"] == 8
        uri = result["datasets"]["orders"]["uri"]
        assert uri.startswith(f"{staging_root}/op_direct/") and uri.endswith("/extract/orders")
        assert "north" not in json.dumps(result)  # no row values travel through XCom

    def test_http_source_reads_every_page(self, connections: Sources, staging_root: str) -> None:
        source = {
            "name": "customers",
            "type": "http",
            "conn_id": "op_users_api",
            "endpoint": "/users",
            "records_path": "data",
            "pagination": {"style": "page", "size_param": "per_page", "page_size": 2},
        }
        result = _extract(staging_root, source)

        assert result["datasets"]["customers"]["row_count"] == 3
        assert result["datasets"]["customers"]["columns"] == {"customer_id": "integer", "name": "string"}

    def test_missing_file_fails_without_retry(self, connections: Sources, staging_root: str) -> None:
        with pytest.raises(StageFailed, match=r"'gone'.*file not found") as raised:
            _extract(staging_root, _file("gone", connections.good_csv.with_name("missing.csv")))
        assert isinstance(raised.value.__cause__, SourceError)

    def test_malformed_csv_line_fails_without_retry(self, connections: Sources, staging_root: str) -> None:
        with pytest.raises(StageFailed, match=r"'broken'.*line 3"):
            _extract(staging_root, _file("broken", connections.malformed_csv))

    def test_a_missing_sqlite_source_file_fails_naming_source_and_path_and_is_not_created(
        self, connections: Sources, staging_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "nope.db"
        monkeypatch.setenv("AIRFLOW_CONN_OP_MISSING_DB", f"sqlite:///{missing}")
        source = {"name": "flights", "type": "sql", "conn_id": "op_missing_db", "query": "SELECT * FROM flights"}

        with pytest.raises(StageFailed, match=rf"source 'flights'.*SQLite database file {missing} does not exist"):
            _extract(staging_root, source)

        assert not missing.exists()

    def test_unreachable_database_is_left_to_retries(self, connections: Sources, staging_root: str) -> None:
        source = {"name": "rows", "type": "sql", "conn_id": "op_unreachable_db", "query": "SELECT 1 AS x"}
        with pytest.raises(SourceError, match="'rows'") as raised:
            _extract(staging_root, source)
        assert not isinstance(raised.value, StageFailed)

    def test_http_500_is_left_to_retries(self, connections: Sources, staging_root: str) -> None:
        source = {"name": "api", "type": "http", "conn_id": "op_users_api", "endpoint": "/broken", "max_retries": 0}
        with pytest.raises(SourceError, match="HTTP 500"):
            _extract(staging_root, source)

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            pytest.param({"name": "x", "type": "ftp", "path": "/x"}, r"source #1 \(x\) is invalid", id="unknown-type"),
            pytest.param({"name": "../x", "type": "file", "path": "/x.csv"}, "plain identifier", id="unsafe-name"),
            pytest.param({"name": "x", "type": "file", "path": "/x.bin"}, "cannot tell the format", id="no-format"),
        ],
    )
    def test_bad_source_spec_fails_without_retry(self, source: dict[str, Any], message: str, staging_root: str) -> None:
        with pytest.raises(StageFailed, match=message):
            _extract(staging_root, source)

    def test_http_endpoint_is_what_http_hook_builds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        conn = {
            "conn_type": "http",
            "host": "api.example.com",
            "schema": "https",
            "port": 8443,
            "login": "etl",
            "password": "s3cret-pass",
            "extra": {"X-Api-Key": "k-123456", "verify": "false", "timeout": 10},
        }
        monkeypatch.setenv("AIRFLOW_CONN_OP_HTTP_FULL", json.dumps(conn))

        endpoint = http_endpoint("op_http_full")

        session = endpoint.session
        assert endpoint.base_url == "https://api.example.com:8443" and session is not None
        assert session.headers["X-Api-Key"] == "k-123456" and "timeout" not in session.headers
        assert (session.auth.username, session.auth.password) == ("etl", "s3cret-pass")  # type: ignore[union-attr]
        assert session.verify is False


class TestValidateOperator:
    def _upstream(self, sources: Sources, staging_root: str) -> dict[str, Any]:
        return _extract(staging_root, _file("data", sources.good_csv), task_id="good")

    def test_passing_validation_returns_the_dataset_unchanged(self, sources: Sources, staging_root: str) -> None:
        upstream = self._upstream(sources, staging_root)
        op = ValidateOperator(task_id="validate", upstream=upstream, quality_rules=[{"column": "id", "rule": "unique"}])

        result = op.execute(direct_context("validate"))

        assert result["status"] == "pass"
        assert result["datasets"]["data"] == upstream["datasets"]["data"]

    def test_unknown_rule_name_fails_without_retry(self, sources: Sources, staging_root: str) -> None:
        upstream = self._upstream(sources, staging_root)
        op = ValidateOperator(task_id="v", upstream=upstream, quality_rules=[{"column": "id", "rule": "no_such_rule"}])
        with pytest.raises(StageFailed, match="no_such_rule"):
            op.execute(direct_context("v"))

    def test_unknown_dataset_fails_naming_what_upstream_holds(self, sources: Sources, staging_root: str) -> None:
        op = ValidateOperator(task_id="v", upstream=self._upstream(sources, staging_root), dataset="events")
        with pytest.raises(StageFailed, match=r"no upstream dataset named 'events'.*\['data'\]"):
            op.execute(direct_context("v"))

    def test_failing_validation_is_a_result_by_default(self, sources: Sources, staging_root: str) -> None:
        rules = [{"column": "label", "rule": "in_list", "values": ["a"]}]
        op = ValidateOperator(task_id="v", upstream=self._upstream(sources, staging_root), quality_rules=rules)

        result = op.execute(direct_context("v"))

        assert result["status"] == "fail"
        assert result["issues"][0]["affected_rows"] == 2

    def test_fail_task_on_failure_fails_and_still_pushes_the_result(self, sources: Sources, staging_root: str) -> None:
        rules = [{"column": "label", "rule": "in_list", "values": ["a"]}]
        op = ValidateOperator(
            task_id="v", upstream=self._upstream(sources, staging_root), quality_rules=rules, fail_task_on_failure=True
        )
        context = direct_context("v")
        with pytest.raises(StageFailed, match="validation of 'data' failed"):
            op.execute(context)
        assert context["ti"].pushed["return_value"]["status"] == "fail"

    @pytest.mark.parametrize(
        ("interval_end", "status"),
        [
            pytest.param(datetime(2026, 11, 10, tzinfo=timezone.utc), "pass", id="inside-the-interval"),
            pytest.param(datetime(2026, 11, 20, tzinfo=timezone.utc), "fail", id="ten-days-later"),
        ],
    )
    def test_within_last_n_days_counts_back_from_the_interval_end(
        self, tmp_path: Path, staging_root: str, interval_end: datetime, status: str
    ) -> None:
        csv = tmp_path / "events.csv"
        csv.write_text("id,event_ts\n1,2026-11-09 10:00:00\n2,2026-11-09 23:59:00\n")
        upstream = _extract(staging_root, _file("events", csv))
        rules = [{"column": "event_ts", "rule": "within_last_n_days", "days": 1}]
        op = ValidateOperator(task_id="v", upstream=upstream, quality_rules=rules)

        assert op.execute(direct_context("v", interval_end=interval_end))["status"] == status


class TestTransformOperator:
    def test_bad_sql_fails_naming_the_transformation(self, sources: Sources, staging_root: str) -> None:
        op = TransformOperator(
            task_id="t",
            upstream=_extract(staging_root, _file("data", sources.good_csv)),
            transformations=[{"name": "broken_step", "type": "sql", "sql": "SELECT id, FROM data WHERE"}],
            output_dataset="out",
            staging_root=staging_root,
        )
        with pytest.raises(StageFailed, match="broken_step"):
            op.execute(direct_context("t"))

    def test_runs_over_every_upstream_dataset(self, sources: Sources, staging_root: str) -> None:
        first = _extract(staging_root, _file("first", sources.first_csv), task_id="a")
        second = _extract(staging_root, _file("second", sources.second_csv), task_id="b")
        sql = "SELECT s.id, f.value + s.value AS total FROM second AS s LEFT JOIN first AS f USING (id)"
        op = TransformOperator(
            task_id="t",
            upstream=[first, second],
            transformations=[{"name": "joined", "type": "sql", "sql": sql}],
            output_dataset="totals",
            staging_root=staging_root,
        )

        result = op.execute(direct_context("t"))

        assert result["datasets"]["totals"]["row_count"] == 3
        assert result["metrics"]["rows_before"] == 5
        assert result["datasets"]["totals"]["uri"].endswith("/t/totals")


class TestLoadOperator:
    def _op(self, sources: Sources, staging_root: str, **kwargs: Any) -> LoadOperator:
        upstream = _extract(staging_root, _file("data", sources.good_csv))
        return LoadOperator(task_id="load", upstream=upstream, conn_id="op_warehouse", **kwargs)

    def test_upserts_and_a_rerun_leaves_the_table_as_it_was(self, connections: Sources, staging_root: str) -> None:
        op = self._op(connections, staging_root, target_table="labels", load_strategy="upsert", upsert_key="id")
        first = op.execute(direct_context("load"))
        again = op.execute(direct_context("load"))

        assert first["metrics"]["rows_loaded"] == again["metrics"]["rows_loaded"] == 3
        assert (first["metrics"]["rows_inserted"], again["metrics"]["rows_inserted"]) == (3, 0)
        assert warehouse_tables(connections.warehouse_db) == ["labels"]
        with sqlite3.connect(connections.warehouse_db) as con:
            assert con.execute("SELECT id, label FROM labels ORDER BY id").fetchall() == [(1, "a"), (2, "b"), (3, "c")]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param({"target_table": "data; DROP TABLE users"}, "data; DROP TABLE users", id="unsafe-table"),
            pytest.param({"target_table": "t", "load_strategy": "upsert"}, "needs upsert_key", id="upsert-no-key"),
            pytest.param({"target_table": "t", "load_strategy": "merge"}, "load_strategy", id="unknown-strategy"),
        ],
    )
    def test_bad_arguments_fail_and_leave_the_warehouse_untouched(
        self, connections: Sources, staging_root: str, kwargs: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(StageFailed, match=message):
            self._op(connections, staging_root, **kwargs).execute(direct_context("load"))
        assert warehouse_tables(connections.warehouse_db) == []


class TestSnapshotName:
    def test_is_the_same_for_a_retry_of_the_same_run(self) -> None:
        run = "scheduled__2026-11-10T00:00:00+00:00"
        assert snapshot_name("user_engagement_daily", run) == snapshot_name("user_engagement_daily", run)
        assert snapshot_name("t", run) == "t__snap_scheduled_2026_11_10t00_00_00_00_00"

    def test_differs_between_runs_and_stays_within_63_characters(self) -> None:
        table = "a_rather_long_warehouse_table_name_for_daily_engagement"
        names = {snapshot_name(f"analytics.{table}", f"manual__2026-11-1{d}T00:00:00+00:00") for d in range(5)}
        assert len(names) == 5
        assert all(len(n) <= 63 and n.startswith(table[:20]) for n in names)
