"""The agent hook points the data operators call, inside a real task: diagnosis and SQL writing.

``connect`` builds Claude for the running task (here a plain @task, so every Claude setting is its
default); ``diagnose_result`` and a ``SqlWriter`` use it; plans go under $AGENT_PROVIDER_HOME/plans.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

SCHEMAS = {"events": {"user_id": "BIGINT", "amount": "DOUBLE"}, "users": {"user_id": "BIGINT", "country": "VARCHAR"}}


@dag(dag_id="claude_hooks", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def claude_hooks() -> None:
    @task
    def judge(**context: Any) -> dict[str, Any]:
        from airflow_agent_provider.agents import PlanCache, SqlWriter
        from airflow_agent_provider.contracts import StageResult, Transformation
        from airflow_agent_provider.operators._claude import connect, diagnose_result, plans_folder

        validation = StageResult.model_validate(context["dag_run"].conf["validation"])
        claude = connect(context)
        diagnosed = diagnose_result(claude, validation, context["task"].log)
        writer = SqlWriter(claude, cache=PlanCache(plans_folder()))
        totals = Transformation(name="totals", type="sql", description="Total amount per country.")
        sql = writer(totals, SCHEMAS)
        usage = writer.usage.model_dump()
        return {"validation": diagnosed.to_xcom(), "sql": sql, "cache_hits": writer.cache_hits, "sql_usage": usage}

    judge()


claude_hooks()
