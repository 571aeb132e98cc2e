"""Operator tests: bad input of every kind, side by side in one run, each failing its own task.

A good extract feeds the validate, transform and load tasks that get bad arguments; the report
runs last (all_done) and records every failure.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    TransformOperator,
    ValidateOperator,
)

CONF = "{{{{ dag_run.conf['{}'] }}}}"

with DAG(
    dag_id="op_bad_input",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
):
    good = ExtractOperator(task_id="good", sources=[{"name": "data", "type": "file", "path": CONF.format("good_csv")}])
    failing = [
        ExtractOperator(
            task_id="missing_file",
            sources=[{"name": "gone", "type": "file", "path": CONF.format("missing_csv")}],
        ),
        ExtractOperator(
            task_id="unreachable_db",
            sources=[{"name": "rows", "type": "sql", "conn_id": "op_unreachable_db", "query": "SELECT 1 AS x"}],
        ),
        ExtractOperator(
            task_id="http_500",
            sources=[
                {"name": "api", "type": "http", "conn_id": "op_users_api", "endpoint": "/broken", "max_retries": 0}
            ],
        ),
        ExtractOperator(
            task_id="malformed_csv",
            sources=[{"name": "broken", "type": "file", "path": CONF.format("malformed_csv")}],
        ),
        ValidateOperator(
            task_id="unknown_rule",
            upstream=good.output,
            quality_rules=[{"column": "id", "rule": "no_such_rule"}],
        ),
        ValidateOperator(
            task_id="strict_validation",
            upstream=good.output,
            quality_rules=[{"column": "label", "rule": "in_list", "values": ["a"]}],
            fail_task_on_failure=True,
        ),
        TransformOperator(
            task_id="bad_sql",
            upstream=good.output,
            transformations=[{"name": "broken_step", "type": "sql", "sql": "SELECT id, FROM data WHERE"}],
            output_dataset="out",
        ),
        LoadOperator(
            task_id="unsafe_table",
            upstream=good.output,
            conn_id="op_warehouse",
            target_table="data; DROP TABLE users",
        ),
    ]
    failing >> PipelineReportOperator(task_id="report")
