"""The agent hook points the data operators call, inside a real task: diagnosis and SQL writing.

``diagnose_result`` and ``sql_writer`` take the running operator (here a plain @task, so every
Claude setting falls back to its default) and the context; plans go under $AGENT_PROVIDER_HOME/plans.
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
        from airflow_agent_provider.contracts import StageResult, Transformation
        from airflow_agent_provider.operators._claude import diagnose_result, sql_writer

        validation = StageResult.model_validate(context["dag_run"].conf["validation"])
        diagnosed = diagnose_result(context["task"], validation, context)
        writer = sql_writer(context["task"], context)
        totals = Transformation(name="totals", type="sql", description="Total amount per country.")
        sql = writer(totals, SCHEMAS)
        usage = writer.usage.model_dump()
        return {"validation": diagnosed.to_xcom(), "sql": sql, "cache_hits": writer.cache_hits, "sql_usage": usage}

    judge()


claude_hooks()
