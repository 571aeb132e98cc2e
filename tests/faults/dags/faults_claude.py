"""Runs where Claude is asked twice: the validation's diagnosis, then the remediation route.

``extract`` stages payments whose rows break the rules (a null user, a negative amount) and carry
text written to steer a model (``dag_run.conf["note"]``). ``validate`` is the real ValidateOperator
with ``diagnose=True``. In ``faults_claude`` the ``route`` may spend at most two model calls in the
run (the diagnosis counts), then takes ``escalate``; in ``faults_claude_default_budget`` the budget
is the DAG's ``default_args`` (one call, $0.05) and binds both judgment points; in
``faults_claude_no_budget`` it allows no call at all. ``load`` is downstream but not a declared branch.
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


RULES = [
    {"rule": "not_null", "column": "user_id"},
    {"rule": "range", "column": "amount", "min": 0},
    {"rule": "regex", "column": "note", "pattern": "^[A-Za-z0-9 ]*$"},
]


def _claude_dag(dag_id: str, route_settings: dict[str, Any], default_args: dict[str, Any]) -> DAG:
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    with DAG(dag_id, schedule=None, start_date=start, catchup=False, default_args=default_args) as dag:
        validate = ValidateOperator(
            task_id="validate",
            upstream=extract(),
            expected_schema={"user_id": "integer", "amount": "float"},
            quality_rules=RULES,
            diagnose=True,
        )
        route = RemediationBranchOperator(
            task_id="route",
            validation=validate.output,
            branches=BRANCHES,
            on_pass="proceed",
            fallback="escalate",
            timeout_s=10,
            **route_settings,
        )
        route >> [EmptyOperator(task_id=task_id) for task_id in [*BRANCHES, "load"]]
    return dag


faults_claude = _claude_dag("faults_claude", {"max_model_calls": 2}, {})
faults_claude_default_budget = _claude_dag(
    "faults_claude_default_budget", {}, {"max_model_calls": 1, "max_cost_usd": 0.05}
)
faults_claude_no_budget = _claude_dag("faults_claude_no_budget", {}, {"max_model_calls": 0})
