"""One pipeline DAG declared twice, identical but for ``staging_conn_id``: staged Parquet and warehouse-native.

Orders live in the PostgreSQL warehouse (connection ``wh_pg``), regions in a CSV file (the run's conf);
the daily revenue per region is upserted back into the warehouse. A day's orders that break a rule are
quarantined (into ``public.orders_quarantine_<mode>``) and the clean ones go on. ``wh_pipeline_parquet`` stages in
the staging root, ``wh_pipeline_warehouse`` as tables of schema ``agent_staging`` of ``wh_pg``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    QuarantineOperator,
    TransformOperator,
    ValidateOperator,
)

REVENUE_SQL = """
SELECT r.region, o.day, count(*) AS orders, round(sum(o.amount), 2) AS revenue
FROM orders AS o JOIN regions AS r ON r.customer_id = o.customer_id
GROUP BY ALL
"""

ORDERS_SCHEMA = {"order_id": "integer", "customer_id": "integer", "amount": "float"}
ORDERS_RULES = [
    {"column": "order_id", "rule": "unique"},
    {"column": "customer_id", "rule": "not_null"},
    {"column": "amount", "rule": "range", "min": 0},
    {"rule": "row_count_between", "min": 1},
]

for mode, staging_conn_id in (("parquet", None), ("warehouse", "wh_pg")):
    with DAG(
        dag_id=f"wh_pipeline_{mode}",
        schedule="@daily",
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
                    "conn_id": "wh_pg",
                    "query": "SELECT order_id, customer_id, amount, day FROM orders WHERE day = '{{ ds }}'",
                },
                {"name": "regions", "type": "file", "path": "{{ var.value.wh_regions_csv }}"},
            ],
            staging_conn_id=staging_conn_id,
        )
        validate = ValidateOperator(
            task_id="validate",
            upstream=extract.output,
            dataset="orders",
            expected_schema=ORDERS_SCHEMA,
            quality_rules=ORDERS_RULES,
        )
        quarantine = QuarantineOperator(  # a passing day passes through; a bad day's rows go to the table
            task_id="quarantine",
            validation=validate.output,
            dataset="orders",
            expected_schema=ORDERS_SCHEMA,
            quality_rules=ORDERS_RULES,
            quarantine_conn_id="wh_pg",
            quarantine_table=f"public.orders_quarantine_{mode}",
            quarantine_key=["order_id"],
        )
        transform = TransformOperator(
            task_id="transform",
            upstream=[extract.output, quarantine.output],  # the clean orders replace the extracted ones
            transformations=[{"name": "revenue", "type": "sql", "sql": REVENUE_SQL}],
            output_dataset="region_revenue",
        )
        load = LoadOperator(
            task_id="load",
            upstream=transform.output,
            conn_id="wh_pg",
            target_table=f"public.region_revenue_{mode}",
            load_strategy="upsert",
            upsert_key=["region", "day"],
            create_snapshot_before_load=True,
        )
        report = PipelineReportOperator(task_id="report", trigger_rule="all_done")
        load >> report
