"""A stage reading the output of a route the branch skipped: expected, so no error in the log."""

from __future__ import annotations

import pytest

from tests.support.dags import run_dag, task_states, xcom
from tests.support.operators import Sources

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


def test_a_skipped_upstream_is_read_as_nothing_without_an_xcom_error(
    sources: Sources, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run_dag("op_skipped_route", conf=sources.conf())

    log = "".join(capfd.readouterr())
    states = task_states(dag_run)
    assert states == {"pick": "success", "taken": "success", "not_taken": "skipped", "validate": "success"}
    assert xcom(dag_run, "validate")["status"] == "pass"
    assert "XCom not found" not in log
