"""A run that handles every kind of secret, for the test that looks for them where they must not be.

Connections (set by the test): ``faults_source`` and ``faults_warehouse`` are PostgreSQL URIs with a
password, ``anthropic_default`` holds the API key, ``alerts_webhook`` receives alerts. ``careless``
logs a password and a URI the way a careless DAG author would (the secrets masker must hide them);
``broken`` fails with a URI in its error (the alert must not carry it). The target table comes from
the ``table`` param, so a run can pass a hostile name.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task

from airflow_agent_provider.notifiers import StageFailureNotifier
from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    RemediationBranchOperator,
    ValidateOperator,
)

log = logging.getLogger(__name__)


@task
def careless() -> str:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("faults_warehouse")
    print(f"careless print: password={conn.password} uri={conn.get_uri()}")
    log.info("careless log: password=%s uri=%s", conn.password, conn.get_uri())
    return "logged"


@task(on_failure_callback=StageFailureNotifier(webhook_conn_id="alerts_webhook"))
def broken() -> None:
    from airflow.sdk import BaseHook

    uri = BaseHook.get_connection("faults_source").get_uri()
    raise RuntimeError(f"could not reach {uri}: connection reset")


with DAG(
    "faults_secrets",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"table": Param("orders_wh", type="string"), "report": Param("", type="string")},
    default_args={"retries": 0},
):
    extract = ExtractOperator(
        task_id="extract",
        sources=[{"name": "orders", "type": "sql", "conn_id": "faults_source", "query": "SELECT * FROM secret_orders"}],
    )
    validate = ValidateOperator(
        task_id="validate",
        upstream=extract.output,
        quality_rules=[{"rule": "range", "column": "amount", "min": 0}],
        diagnose=True,
    )
    route = RemediationBranchOperator(
        task_id="route",
        validation=validate.output,
        branches={"load": "load the rows anyway", "escalate": "a person looks"},
        on_pass="load",
        fallback="escalate",
        timeout_s=10,
    )
    load = LoadOperator(
        task_id="load",
        upstream=extract.output,
        conn_id="faults_warehouse",
        target_table="{{ params.table }}",
        load_strategy="upsert",
        upsert_key=["id"],
    )
    route >> [load, EmptyOperator(task_id="escalate")]
    [load, careless(), broken()] >> PipelineReportOperator(task_id="report", output_path="{{ params.report }}")
