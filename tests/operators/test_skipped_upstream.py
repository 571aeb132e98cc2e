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


@pytest.mark.parametrize(("trigger_rule", "asked"), [("all_success", False), ("none_failed", True)])
def test_upstream_states_are_asked_for_only_where_a_skipped_upstream_can_reach_the_task(
    trigger_rule: str, asked: bool
) -> None:
    import pendulum
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_agent_provider.operators import ValidateOperator
    from airflow_agent_provider.operators.base import _skipped_upstream

    with DAG("skipped_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        up = EmptyOperator(task_id="up")
        validate = ValidateOperator(task_id="validate", upstream=up.output, trigger_rule=trigger_rule)
        up >> validate
    calls: list[list[str]] = []

    class TaskInstance:
        dag_id = "skipped_probe"

        def get_task_states(self, *, dag_id: str, task_ids: list[str], run_ids: list[str]) -> dict[str, dict[str, str]]:
            calls.append(task_ids)
            return {"r": {"up": "skipped"}}

    skipped = _skipped_upstream(validate, {"ti": TaskInstance(), "run_id": "r"})  # type: ignore[typeddict-item]

    assert (calls == [["up"]], skipped) == (asked, frozenset({"up"}) if asked else frozenset())
