"""Diagnose a failed validation: what is wrong, the likely cause, the next step (a small model)."""

from __future__ import annotations

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.prompts import DIAGNOSE_SYSTEM, validation_section
from airflow_agent_provider.contracts import Diagnosis, StageResult, Usage


def diagnose_prompt(validation: StageResult) -> str:
    return (
        "This validation failed. Diagnose it for the on-call data engineer.\n\n"
        f"Validation result:\n{validation_section([validation])}\n\n"
        "Answer with summary, likely_cause, recommendation and severity."
    )


def diagnose(claude: Claude, validation: StageResult) -> tuple[Diagnosis, Usage]:
    """Ask Claude for a ``Diagnosis`` of ``validation``.

    :raises ModelCallError: no valid answer within the policy.
    """
    answer = claude.ask("diagnose", system=DIAGNOSE_SYSTEM, user=diagnose_prompt(validation), output=Diagnosis)
    return answer.value, answer.usage
