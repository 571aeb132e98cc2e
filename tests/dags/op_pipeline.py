"""Operator tests: every stage operator in a row over real SQLite, CSV and HTTP sources.

Paths come from the run's conf; connections from AIRFLOW_CONN_OP_* set by the test.
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

REVENUE_SQL = """
SELECT r.region, o.day, count(*) AS orders, round(sum(o.amount), 2) AS revenue, min(c.name) AS first_customer
FROM orders AS o
JOIN regions AS r ON r.customer_id = o.customer_id
JOIN customers AS c ON c.customer_id = o.customer_id
GROUP BY r.region, o.day
"""

with DAG(
    dag_id="op_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["test"],
):
    extract = ExtractOperator(
        task_id="extract",
        sources=[
            {
                "name": "orders",
                "type": "sql",
                "conn_id": "op_source_db",
                "query": "SELECT order_id, customer_id, amount, day FROM orders WHERE day = :day ORDER BY order_id",
                "parameters": {"day": "{{ dag_run.conf['day'] }}"},
            },
            {"name": "regions", "type": "file", "path": "{{ dag_run.conf['regions_csv'] }}"},
            {
                "name": "customers",
                "type": "http",
                "conn_id": "op_users_api",
                "endpoint": "/users",
                "records_path": "data",
                "pagination": {"style": "page", "size_param": "per_page", "page_size": 2},
            },
        ],
    )
    validate = ValidateOperator(
        task_id="validate",
        upstream=extract.output,
        dataset="orders",
        expected_schema={"order_id": "integer", "customer_id": "integer", "amount": "float"},
        quality_rules=[
            {"column": "customer_id", "rule": "not_null"},
            {"column": "amount", "rule": "range", "min": 0},
            {"rule": "row_count_between", "min": 1, "max": 100},
        ],
    )
    transform = TransformOperator(
        task_id="transform",
        upstream=[extract.output, validate.output],
        transformations=[{"name": "revenue", "type": "sql", "sql": REVENUE_SQL}],
        output_dataset="region_revenue",
    )
    load = LoadOperator(
        task_id="load",
        upstream=transform.output,
        conn_id="op_warehouse",
        target_table="region_revenue",
        load_strategy="upsert",
        upsert_key=["region", "day"],
        create_snapshot_before_load=True,
    )
    report = PipelineReportOperator(task_id="report", output_path="{{ dag_run.conf['report_path'] }}")
    load >> report
