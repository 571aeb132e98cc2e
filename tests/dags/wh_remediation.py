"""Schema remediation on warehouse staging tables in a real run: the DAG of ``claude_remediation.py``
with the payments in the PostgreSQL warehouse (connection ``wh_pg``) and staged there.

``extract`` stages ``payments`` (``uid`` instead of ``user_id``, ``amount`` as text, one of them not a
number) as a run-scoped table of schema ``agent_staging``; ``validate`` fails it; ``remediate`` asks
Claude (FakeClaude, scripted by the test) for fix plans and applies them inside the warehouse, the
rows it cannot cast going to ``public.payment_rejects``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_agent_provider.operators import ExtractOperator, SchemaRemediationOperator, ValidateOperator

EXPECTED = {"user_id": "integer", "amount": "float"}
RULES = [{"rule": "not_null", "column": "user_id"}]

with DAG("wh_remediation", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    extract = ExtractOperator(
        task_id="extract",
        sources=[{"name": "payments", "type": "sql", "conn_id": "wh_pg", "query": "SELECT uid, amount FROM payments"}],
        staging_conn_id="wh_pg",
    )
    validate = ValidateOperator(
        task_id="validate", upstream=extract.output, expected_schema=EXPECTED, quality_rules=RULES
    )
    SchemaRemediationOperator(
        task_id="remediate",
        validation=validate.output,
        expected_schema=EXPECTED,
        quality_rules=RULES,
        max_iterations=3,
        quarantine_conn_id="wh_pg",
        timeout_s=10,
    )
