"""Cold-start test: every stage path on tiny data, in the process that runs it (see test_cold_start.py).

Extract reads a SQL, a file and an HTTP source; validation fails on purpose (an amount over 15), so
the route asks Claude (FakeClaude, scripted by the test) and follows its answer to the transform;
the load's warehouse connection comes from the run's conf.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    TransformOperator,
    ValidateOperator,
)
from airflow_agent_provider.operators.branch import RemediationBranchOperator

REVENUE_SQL = """
SELECT r.region, o.day, count(*) AS orders, round(sum(o.amount), 2) AS revenue, min(c.name) AS first_customer
FROM orders AS o
JOIN regions AS r ON r.customer_id = o.customer_id
JOIN customers AS c ON c.customer_id = o.customer_id
GROUP BY r.region, o.day
"""

with DAG(
    dag_id="cold_start",
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
        expected_schema={"order_id": "integer", "customer_id": "integer", "amount": "float", "day": "string"},
        quality_rules=[
            {"column": "customer_id", "rule": "not_null"},
            {"column": "order_id", "rule": "unique"},
            {"column": "amount", "rule": "range", "min": 0, "max": 15},
        ],
    )
    route = RemediationBranchOperator(
        task_id="route",
        validation=validate.output,
        branches={"transform": "Load the day anyway.", "escalate": "A person looks first."},
        on_pass="transform",
        fallback="escalate",
        timeout_s=60,  # a loaded CI machine must not turn a slow answer into the fallback
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
        conn_id="{{ dag_run.conf['warehouse_conn'] }}",
        target_table="region_revenue",
        load_strategy="upsert",
        upsert_key=["region", "day"],
    )
    report = PipelineReportOperator(task_id="report", output_path="{{ dag_run.conf['report_path'] }}")
    route >> [transform, EmptyOperator(task_id="escalate")]
    load >> report
