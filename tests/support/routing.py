"""The routes of ``tests/dags/claude_routing.py`` and what the routing tests read of a run."""

from __future__ import annotations

from typing import Any

from airflow_agent_provider.contracts import Usage
from airflow_agent_provider.testing import Reply
from tests.agents.support import failing_validation
from tests.support.dags import task_states

BRANCHES = {
    "proceed": "continue",
    "remediate_schema": "fix the schema",
    "quarantine_rows": "quarantine bad rows",
    "escalate": "a person looks",
}


def answer(route: str, confidence: float = 0.8) -> Reply:
    return Reply.json({"route": route, "rationale": "the evidence says so", "confidence": confidence})


def conf(validation: Any = None, **usage: float) -> dict[str, Any]:
    result = (validation or failing_validation()).to_xcom()
    if usage:
        result["usage"] = Usage(**usage).model_dump()  # type: ignore[arg-type]
    return {"validation": result}


def route_seconds(dag_run: Any) -> float:
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "route")
    return (ti.end_date - ti.start_date).total_seconds()


def routed_to(dag_run: Any) -> list[str]:
    states = task_states(dag_run)
    return sorted(t for t in [*BRANCHES, "load"] if states[t] == "success")


# ---------------------------------------------------------------------------------------------- configuration
