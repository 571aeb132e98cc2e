"""The operators in real Airflow runs (``dag.test()`` against the SQLite metadata DB).

Templates render, results thread through XCom as small JSON, mapped tasks stage apart, failures
stay in their task and the report still runs and records them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.dags import run_dag, task_states, xcom
from tests.support.operators import Sources, warehouse_tables

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as con:
        return con.execute(sql).fetchall()


class TestOperatorsInADag:
    def test_stages_thread_through_xcom_into_the_warehouse(self, connections: Sources, tmp_path: Path) -> None:
        report_path = tmp_path / "reports" / "run.json"
        run = run_dag("op_pipeline", conf=connections.conf(day="2026-11-09", report_path=str(report_path)))

        assert task_states(run) == dict.fromkeys(["extract", "validate", "transform", "load", "report"], "success")
        extract = xcom(run, "extract")
        assert {n: d["row_count"] for n, d in extract["datasets"].items()} == {
            "orders": 4,
            "regions": 3,
            "customers": 3,
        }
        assert "Grace" not in json.dumps(extract)
        assert xcom(run, "validate")["status"] == "pass"
        assert xcom(run, "transform")["metrics"]["rows_after"] == 2
        load = xcom(run, "load")
        assert load["metrics"]["load_validation"] == {
            "row_count_match": True,
            "schema_match": True,
            "no_duplicates": True,
        }
        table = _rows(
            connections.warehouse_db, "SELECT region, day, orders, revenue, first_customer FROM region_revenue"
        )
        assert sorted(table) == [("north", "2026-11-09", 3, 21.5, "Ada"), ("south", "2026-11-09", 1, 20.5, "Grace")]

        report = json.loads(report_path.read_text())
        assert report == xcom(run, "report")
        assert report["status"] == "success"
        assert report["rows_loaded"] == 2
        assert list(report["stages"]) == ["extract", "validate", "transform", "load"]
        assert report["stages"]["extract"]["rows"] == 10
        assert report["stages"]["load"]["output_bytes"] == len(json.dumps(load))

    def test_mapped_extract_stages_each_source_under_its_map_index(self, connections: Sources) -> None:
        run = run_dag("op_mapped", conf=connections.conf())

        assert task_states(run) == {
            "extract[0]": "success",
            "extract[1]": "success",
            "validate_second": "success",
            "report": "success",
        }
        first, second = xcom(run, "extract", map_index=0), xcom(run, "extract", map_index=1)
        assert first["datasets"]["first"]["uri"].endswith("/extract/map_0/first")
        assert second["datasets"]["second"]["uri"].endswith("/extract/map_1/second")
        validate = xcom(run, "validate_second")
        assert validate["status"] == "pass"
        assert validate["datasets"]["second"]["row_count"] == 3
        report = xcom(run, "report")
        assert report["stages"]["extract"]["rows"] == 5
        assert report["stages"]["extract"]["status"] == "success"

    def test_bad_input_fails_its_own_task_and_the_report_records_it(self, connections: Sources) -> None:
        run = run_dag("op_bad_input", conf=connections.conf())

        failing = [
            "missing_file",
            "unreachable_db",
            "http_500",
            "malformed_csv",
            "unknown_rule",
            "bad_sql",
            "unsafe_table",
        ]
        states = {"good": "success", "report": "failed", "strict_validation": "failed"}
        assert task_states(run) == {**states, **dict.fromkeys(failing, "failed")}
        for task_id in failing:
            assert xcom(run, task_id) is None
        assert xcom(run, "strict_validation")["status"] == "fail"  # pushed before the task failed
        report = xcom(run, "report")
        assert report["status"] == "failed"
        assert sorted(e.split(":")[0] for e in report["errors"]) == sorted([*failing, "strict_validation"])
        assert report["stages"]["missing_file"]["stage"] == "extract"
        assert report["stages"]["unsafe_table"]["status"] == "failed"
        assert (report["stages"]["strict_validation"]["status"], report["stages"]["strict_validation"]["issues"]) == (
            "fail",
            1,
        )
        assert warehouse_tables(connections.warehouse_db) == []
