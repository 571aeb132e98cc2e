"""Operator tests: one ExtractOperator mapped over sources with .partial().expand()."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_agent_provider.operators import ExtractOperator, PipelineReportOperator, ValidateOperator

with DAG(
    dag_id="op_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
):
    extract = ExtractOperator.partial(task_id="extract").expand(
        sources=[
            [{"name": "first", "type": "file", "path": "{{ dag_run.conf['first_csv'] }}"}],
            [{"name": "second", "type": "file", "path": "{{ dag_run.conf['second_csv'] }}"}],
        ]
    )
    validate = ValidateOperator(
        task_id="validate_second",
        upstream=extract.output,
        dataset="second",
        quality_rules=[{"column": "id", "rule": "unique"}],
    )
    validate >> PipelineReportOperator(task_id="report")
