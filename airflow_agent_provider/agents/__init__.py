"""The Claude layer: structured calls, judgment points, prompts, prices and plans. No Airflow here.

Every judgment point (diagnose, choose_route, propose_fix, write_sql) asks through one ``Claude``
(client, models, bounds, budget) and ``call_structured``: native JSON-schema output validated with
pydantic, bounded retries and deadline, a budget checked before every HTTP attempt, usage priced per model.
"""

from airflow_agent_provider.agents.calls import Answer, Budget, CallPolicy, call_structured
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.diagnosis import diagnose
from airflow_agent_provider.agents.fixes import ALL_ACTIONS, propose_fix
from airflow_agent_provider.agents.models import SMALL_MODEL, STRONG_MODEL, TIERS
from airflow_agent_provider.agents.plans import PlanCache
from airflow_agent_provider.agents.pricing import PRICES, ModelPrice, price_of, usage_of
from airflow_agent_provider.agents.remediation import RemediationOutcome, RemediationRequest, remediate
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
    "Claude",
    "ModelPrice",
    "PlanCache",
    "RemediationOutcome",
    "RemediationRequest",
    "SqlWriter",
    "call_structured",
    "check_sql",
    "choose_route",
    "diagnose",
    "price_of",
    "propose_fix",
    "remediate",
    "usage_of",
    "write_sql",
]
