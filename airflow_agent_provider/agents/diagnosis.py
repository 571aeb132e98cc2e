"""Diagnose a failed validation: what is wrong, the likely cause, the next step (a small model)."""

from __future__ import annotations

from typing import Any

from airflow_agent_provider.agents.calls import Budget, CallPolicy, call_structured
from airflow_agent_provider.agents.models import MAX_OUTPUT_TOKENS, resolve_model
from airflow_agent_provider.agents.pricing import PriceTable
from airflow_agent_provider.agents.prompts import DIAGNOSE_SYSTEM, validation_section
from airflow_agent_provider.contracts import Diagnosis, StageResult, Usage


def diagnose_prompt(validation: StageResult) -> str:
    return (
        "This validation failed. Diagnose it for the on-call data engineer.\n\n"
        f"Validation result:\n{validation_section([validation])}\n\n"
        "Answer with summary, likely_cause, recommendation and severity."
    )


def diagnose(
    client: Any,
    validation: StageResult,
    *,
    model: str | None = None,
    policy: CallPolicy | None = None,
    budget: Budget | None = None,
    prices: PriceTable | None = None,
) -> tuple[Diagnosis, Usage]:
    """Ask Claude for a ``Diagnosis`` of ``validation``.

    :raises ModelCallError: no valid answer within the policy.
    """
    answer = call_structured(
        client,
        model=resolve_model("diagnose", model),
        system=DIAGNOSE_SYSTEM,
        user=diagnose_prompt(validation),
        output=Diagnosis,
        policy=policy or CallPolicy(max_tokens=MAX_OUTPUT_TOKENS["diagnose"]),
        budget=budget,
        prices=prices,
    )
    return answer.value, answer.usage
