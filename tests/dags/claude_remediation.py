"""Schema remediation in a real run: staged data with a renamed column and a text-typed amount.

``extract`` stages four payments (``uid`` instead of ``user_id``, ``amount`` as text, one of them
not a number), ``validate`` is the real ValidateOperator, and ``remediate`` asks Claude (FakeClaude,
scripted by the test) for fix plans. ``dag_run.conf["quarantine_conn"]`` names a warehouse
connection for the quarantined rows (none: they stay staged).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_agent_provider.operators.remediate import SchemaRemediationOperator
from airflow_agent_provider.operators.validate import ValidateOperator

EXPECTED = {"user_id": "integer", "amount": "float"}
RULES = [{"rule": "not_null", "column": "user_id"}]


@task
def extract(**context: Any) -> dict[str, Any]:
    import pandas as pd

    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.engines import staging
    from airflow_agent_provider.operators._common import run_scope

    writer = staging.DatasetWriter(run_scope(context).dataset_uri(None, "payments"))
    writer.write(pd.DataFrame({"uid": [1, 2, 3, 4], "amount": ["10.5", "20", "3.25", "n/a"]}))
    return StageResult(stage="extract", status="success", datasets={"payments": writer.finish()}).to_xcom()


with DAG(
    "claude_remediation", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
) as claude_remediation:
    validate = ValidateOperator(task_id="validate", upstream=extract(), expected_schema=EXPECTED, quality_rules=RULES)
    SchemaRemediationOperator(
        task_id="remediate",
        validation=validate.output,
        expected_schema=EXPECTED,
        quality_rules=RULES,
        max_iterations=3,
        quarantine_conn_id="{{ dag_run.conf.get('quarantine_conn', '') }}",
        timeout_s=10,
        retries=2,
    )
