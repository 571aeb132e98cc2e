"""SchemaRemediationOperator and the agent hook points in real runs, Claude played by FakeClaude.

``tests/dags/claude_remediation.py`` stages payments with a renamed column and a text amount, the
real ValidateOperator fails them, and the remediation asks for plans; ``tests/dags/claude_hooks.py``
calls ``diagnose_result`` and ``sql_writer`` from inside a task.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.contracts import StageResult
from airflow_agent_provider.engines import staging
from airflow_agent_provider.testing import FakeClaude, Reply
from tests.agents.support import claude_conn, failing_validation, fake
from tests.support.dags import run_dag, task_states, xcom
from tests.support.fix_plans import CAST, QUARANTINE, RENAME, USELESS, plan

__all__ = ["claude_conn", "fake"]


def read(uri: str) -> list[tuple[Any, ...]]:
    con = staging.connect()
    try:
        return con.execute(f"SELECT * FROM {staging.scan_sql(uri)} ORDER BY 1").fetchall()
    finally:
        con.close()


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestSchemaRemediationRuns:
    def test_fixes_a_renamed_column_and_a_castable_type_in_two_iterations(
        self, claude_conn: FakeClaude, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        warehouse = tmp_path / "quarantine.db"
        monkeypatch.setenv("AIRFLOW_CONN_QUARANTINE_DB", f"sqlite:///{warehouse}")
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION", "keep")  # the staged fix is read below
        claude_conn.add(plan(RENAME), times=1)
        claude_conn.add(plan(QUARANTINE, CAST), times=1)
        dag_run = run_dag("claude_remediation", conf={"quarantine_conn": "quarantine_db"})
        assert task_states(dag_run)["remediate"] == "success"
        result = StageResult.model_validate(xcom(dag_run, "remediate"))
        assert result.status == "pass" and result.metrics["iteration_count"] == 2
        assert [i["outcome"] for i in result.metrics["iterations"]] == ["fail", "pass"]
        assert result.datasets["payments"].columns == {"user_id": "integer", "amount": "float"}
        assert read(result.datasets["payments"].uri) == [(1, 10.5), (2, 20.0), (3, 3.25)]
        assert read(result.datasets["payment_rejects"].uri) == [(4, "n/a", "amount not_castable")]
        with sqlite3.connect(warehouse) as con:
            rows = con.execute("SELECT user_id, amount, quarantine_rule, quarantine_task_id FROM payment_rejects")
            assert rows.fetchall() == [("4", "n/a", "amount not_castable", "remediate")]
        assert result.usage.model_calls == 2 and result.usage.cost_usd > 0

    def test_useless_plans_fail_the_task_once_with_every_plan_recorded(
        self, claude_conn: FakeClaude, capfd: pytest.CaptureFixture[str]
    ) -> None:
        claude_conn.add(plan(USELESS))
        dag_run = run_dag("claude_remediation")
        log = "".join(capfd.readouterr())
        assert "SchemaRemediationFailed" in log and "still failing after 3 iteration(s)" in log
        assert "Remaining issues: payments.user_id: expected column (integer) is missing" in log
        ti = next(t for t in dag_run.get_task_instances() if t.task_id == "remediate")
        assert (ti.state, ti.try_number) == ("failed", 1)  # retries=2, but a retry cannot help
        iterations = xcom(dag_run, "remediate", "iterations")
        assert [i["plan"]["actions"] for i in iterations] == [[USELESS]] * 3
        assert all(i["outcome"] == "fail" for i in iterations)
        assert len(claude_conn.messages_requests) == 3


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestHookPointRuns:
    def test_diagnosis_and_sql_land_in_the_result_and_a_cached_plan_costs_nothing(
        self, claude_conn: FakeClaude, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AGENT_PROVIDER_HOME", str(tmp_path))
        diagnosis = {"summary": "amount is text", "likely_cause": "a source change", "recommendation": "cast it"}
        claude_conn.add(Reply.json({**diagnosis, "severity": "medium"}), match={"schema_title": "Diagnosis"})
        sql = "SELECT u.country, sum(e.amount) AS total FROM events e JOIN users u USING (user_id) GROUP BY 1"
        claude_conn.add(Reply.json({"sql": sql, "explanation": "totals"}), match={"schema_title": "SqlAnswer"})
        conf = {"validation": failing_validation().to_xcom()}

        first = xcom(run_dag("claude_hooks", conf=conf), "judge")
        validation = StageResult.model_validate(first["validation"])
        assert validation.diagnosis is not None and validation.recommendation == "cast it"
        assert validation.usage.model_calls == 1
        assert first["sql"] == sql and first["sql_usage"]["model_calls"] == 1
        plans = list((tmp_path / "plans").glob("totals-*.sql"))
        assert len(plans) == 1 and "-- model: claude-sonnet-4-6" in plans[0].read_text()

        second = xcom(run_dag("claude_hooks", conf=conf), "judge")
        assert second["cache_hits"] == ["totals"] and second["sql_usage"]["model_calls"] == 0
        titles = [json.dumps(r.json["output_config"]["format"]["schema"]["title"]) for r in claude_conn.requests]
        assert titles.count('"SqlAnswer"') == 1 and titles.count('"Diagnosis"') == 2
