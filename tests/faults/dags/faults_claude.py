"""A run where Claude is asked twice: the validation's diagnosis, then the remediation route.

``extract`` stages payments whose rows break the rules (a null user, a negative amount) and carry
text written to steer a model (``dag_run.conf["note"]``). ``validate`` is the real ValidateOperator
with ``diagnose=True``; ``route`` may spend at most two model calls in the run (the diagnosis
counts), then takes ``escalate``. ``load`` is downstream but not a declared branch.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task

from airflow_agent_provider.operators.branch import RemediationBranchOperator
from airflow_agent_provider.operators.validate import ValidateOperator

BRANCHES = {
    "proceed": "The issues are cosmetic: continue.",
    "quarantine_rows": "A few rows are bad: quarantine them and continue.",
    "escalate": "Anything unexplained: a person looks before anything moves.",
}


@task
def extract(**context: Any) -> dict[str, Any]:
    import pandas as pd

    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.engines import staging
    from airflow_agent_provider.operators._common import run_scope

    note = str((context["dag_run"].conf or {}).get("note", "ok"))
    writer = staging.DatasetWriter(run_scope(context).dataset_uri(None, "payments"))
    writer.write(pd.DataFrame({"user_id": [1, None, 3], "amount": [10.0, 20.0, -5.0], "note": [note, note, note]}))
    return StageResult(stage="extract", status="success", datasets={"payments": writer.finish()}).to_xcom()


with DAG("faults_claude", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    validate = ValidateOperator(
        task_id="validate",
        upstream=extract(),
        expected_schema={"user_id": "integer", "amount": "float"},
        quality_rules=[
            {"rule": "not_null", "column": "user_id"},
            {"rule": "range", "column": "amount", "min": 0},
            {"rule": "regex", "column": "note", "pattern": "^[A-Za-z0-9 ]*$"},
        ],
        diagnose=True,
    )
    route = RemediationBranchOperator(
        task_id="route",
        validation=validate.output,
        branches=BRANCHES,
        on_pass="proceed",
        fallback="escalate",
        max_model_calls=2,
        timeout_s=10,
    )
    route >> [EmptyOperator(task_id=task_id) for task_id in [*BRANCHES, "load"]]
