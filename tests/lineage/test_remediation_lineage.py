"""Lineage of Claude's schema remediation (tests/dags/claude_remediation.py): the ``agentRemediation`` run
facet on success and on failure, and the quarantine table it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.testing import FakeClaude
from tests.agents.support import claude_conn, fake
from tests.lineage.runner import dags_test, task_event
from tests.lineage.spec import event_errors
from tests.support.fix_plans import CAST, QUARANTINE, RENAME, USELESS, plan

__all__ = ["claude_conn", "fake"]

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


def _all_valid(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    found = {f"{e['job']['name']} {e['eventType']}": event_errors(e) for e in events}
    return {where: problems for where, problems in found.items() if problems}


class TestRemediationLineage:
    def test_a_fixed_dataset_reports_each_plan_its_cost_and_the_rows_quarantined(
        self, claude_conn: FakeClaude, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        warehouse = tmp_path / "quarantine.db"
        monkeypatch.setenv("AIRFLOW_CONN_QUARANTINE_DB", f"sqlite:///{warehouse}")
        claude_conn.add(plan(RENAME), times=1)
        claude_conn.add(plan(QUARANTINE, CAST), times=1)

        events = dags_test(
            "remediation_fixed", "claude_remediation", None, tmp_path, conf={"quarantine_conn": "quarantine_db"}
        )

        assert _all_valid(events) == {}
        complete = task_event(events, "remediate", "COMPLETE")
        facet = complete["run"]["facets"]["agentRemediation"]
        assert (facet["dataset"], facet["status"], facet["decidedBy"]) == ("payments", "pass", "claude")
        assert [(i["actions"], i["outcome"]) for i in facet["iterations"]] == [
            (["rename_column"], "fail"),
            (["quarantine_rows", "cast_column"], "pass"),
        ]
        assert facet["usage"]["modelCalls"] == 2 and facet["usage"]["costUsd"] > 0
        [source] = complete["inputs"]  # staged by a plain @task: its stable staging name
        assert source["namespace"] == "file" and source["name"].endswith("/claude_remediation/extract/payments")
        [rejects] = complete["outputs"]
        assert (rejects["namespace"], rejects["name"]) == (f"sqlite://{warehouse}", "payment_rejects")
        assert rejects["outputFacets"]["outputStatistics"]["rowCount"] == 1

    def test_a_remediation_that_gives_up_reports_every_iteration_on_its_failure_event(
        self, claude_conn: FakeClaude, tmp_path: Path
    ) -> None:
        claude_conn.add(plan(USELESS))

        events = dags_test("remediation_failed", "claude_remediation", None, tmp_path)

        assert _all_valid(events) == {}
        failed = task_event(events, "remediate", "FAIL")
        facet = failed["run"]["facets"]["agentRemediation"]
        assert (facet["status"], facet["stoppedBecause"]) == ("fail", "still failing after 3 iteration(s)")
        assert [(i["actions"], i["outcome"]) for i in facet["iterations"]] == [(["fill_default"], "fail")] * 3
        assert facet["usage"]["modelCalls"] == 3
        assert "errorMessage" in failed["run"]["facets"]  # Airflow's own facet: the exception
