"""Routing DAGs for the RemediationBranchOperator tests.

The validation result comes from ``dag_run.conf["validation"]`` (a passing one when absent), so one
DAG serves every scenario; FakeClaude, scripted by the test, stands in for Claude through the
``anthropic_default`` connection the test sets. ``load`` is a direct downstream task that is NOT a
declared branch: an answer naming it must never be followed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task

from airflow_agent_provider.operators.branch import RemediationBranchOperator

BRANCHES = {
    "proceed": "The data is fine or the issues are cosmetic: continue with transform and load.",
    "remediate_schema": "Columns are renamed or have the wrong type: ask for a schema fix plan and re-validate.",
    "quarantine_rows": "A small share of rows is bad: move them to quarantine and continue with the rest.",
    "escalate": "Unexplained or suspicious problems: a person looks at the data before anything moves.",
}
PASSING = {"stage": "validate", "status": "pass", "task_id": "validate"}


@task
def validate(**context: Any) -> dict[str, Any]:
    return dict((context["dag_run"].conf or {}).get("validation") or PASSING)


def _routing_dag(dag_id: str, branches: dict[str, str] = BRANCHES, **branch_kwargs: Any) -> DAG:
    with DAG(
        dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=4
    ) as dag:
        route = RemediationBranchOperator(
            task_id="route",
            validation=validate(),
            branches=branches,
            on_pass="proceed",
            fallback="escalate",
            timeout_s=10,
            **branch_kwargs,
        )
        route >> [EmptyOperator(task_id=task_id) for task_id in [*BRANCHES, "load"]]
    return dag


claude_route = _routing_dag("claude_route")
claude_route_budget = _routing_dag("claude_route_budget", max_cost_usd=0.5)
claude_route_approval = _routing_dag(
    "claude_route_approval", require_approval=True, approval_timeout=timedelta(minutes=30)
)

claude_route_gate = _routing_dag("claude_route_gate", min_confidence=0.7)
claude_route_gate_approval = _routing_dag(
    "claude_route_gate_approval", min_confidence=0.7, require_approval=True, approval_timeout=timedelta(minutes=30)
)

# Decision memory. The description of ``proceed`` and approval can be changed for a test through the
# environment (the DAG file is parsed again for every run), as an edited DAG file would change them.
MEMORY_BRANCHES = {**BRANCHES, "proceed": os.environ.get("ROUTING_TEST_PROCEED", BRANCHES["proceed"])}
claude_route_memory = _routing_dag(
    "claude_route_memory",
    MEMORY_BRANCHES,
    reuse_decisions=True,
    reuse_for=timedelta(days=30),
    require_approval=os.environ.get("ROUTING_TEST_APPROVAL") == "1",  # turned on later, as a DAG edit would
    approval_timeout=timedelta(minutes=30),
)
claude_route_memory_brief = _routing_dag(
    "claude_route_memory_brief", reuse_decisions=True, reuse_for=timedelta(seconds=2)
)
claude_route_memory_approval = _routing_dag(
    "claude_route_memory_approval",
    reuse_decisions=True,
    require_approval=True,
    approval_timeout=timedelta(minutes=30),
)
