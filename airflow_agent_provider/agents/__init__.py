"""The Claude layer: structured calls, judgment points, prompts, prices and plans. No Airflow here.

Every judgment point (diagnose, choose_route, propose_fix, write_sql) goes through
``call_structured``: native JSON-schema output validated with pydantic, bounded retries and
deadline, a budget checked before every HTTP attempt, and usage priced per model.
"""

from airflow_agent_provider.agents.calls import Answer, Budget, CallPolicy, call_structured
from airflow_agent_provider.agents.diagnosis import diagnose
from airflow_agent_provider.agents.fixes import ALL_ACTIONS, propose_fix
from airflow_agent_provider.agents.models import SMALL_MODEL, STRONG_MODEL, TIERS, resolve_model
from airflow_agent_provider.agents.plans import PlanCache
from airflow_agent_provider.agents.pricing import PRICES, ModelPrice, price_of, usage_of
from airflow_agent_provider.agents.remediation import RemediationOutcome, RemediationTask, remediate
from airflow_agent_provider.agents.routing import choose_route
from airflow_agent_provider.agents.sql import SqlWriter, check_sql, write_sql

__all__ = [
    "ALL_ACTIONS",
    "PRICES",
    "SMALL_MODEL",
    "STRONG_MODEL",
    "TIERS",
    "Answer",
    "Budget",
    "CallPolicy",
    "ModelPrice",
    "PlanCache",
    "RemediationOutcome",
    "RemediationTask",
    "SqlWriter",
    "call_structured",
    "check_sql",
    "choose_route",
    "diagnose",
    "price_of",
    "propose_fix",
    "remediate",
    "resolve_model",
    "usage_of",
    "write_sql",
]
