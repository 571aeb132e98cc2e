"""Operator tests: a stage reading the outputs of two routes, one of which the branch skipped."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_agent_provider.operators import ExtractOperator, ValidateOperator

with DAG(
    dag_id="op_skipped_route",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
):

    @task.branch
    def pick() -> str:
        return "taken"

    source = [{"name": "rows", "type": "file", "path": "{{ dag_run.conf['good_csv'] }}"}]
    taken = ExtractOperator(task_id="taken", sources=source)
    not_taken = ExtractOperator(task_id="not_taken", sources=source)
    validate = ValidateOperator(
        task_id="validate",
        upstream=[taken.output, not_taken.output],
        dataset="rows",
        quality_rules=[{"column": "id", "rule": "not_null"}],
        trigger_rule="none_failed",
    )
    pick() >> [taken, not_taken]
