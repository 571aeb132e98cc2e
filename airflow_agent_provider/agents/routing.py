"""Choose a remediation route: a closed choice among the branch task ids the DAG declares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.prompts import ROUTE_SYSTEM, bullet_list, validation_section
from airflow_agent_provider.contracts import RouteDecision, StageResult
from airflow_agent_provider.exceptions import ModelCallError

MAX_RATIONALE_CHARS = 1000


def route_answer_model(options: Sequence[str]) -> type[BaseModel]:
    """What Claude may answer: ``route`` is an enum of exactly ``options``.

    Not the ``contracts.RouteDecision`` record (built from it), but its JSON schema keeps that title,
    which FakeClaude scripts match on.
    """
    if not options:
        raise ValueError("a route needs at least one option")
    route_type: Any = Literal[tuple(options)]
    return create_model(
        "RouteAnswer",
        __config__=ConfigDict(extra="forbid", title="RouteDecision"),
        route=(route_type, Field(description="exactly one of the offered route ids")),
        rationale=(str, Field(max_length=MAX_RATIONALE_CHARS, description="the decisive evidence, briefly")),
        confidence=(float, Field(ge=0.0, le=1.0, description="0 = a guess, 1 = certain")),
    )


def route_prompt(validations: Sequence[StageResult], branches: Mapping[str, str]) -> str:
    options = bullet_list((key, branches[key]) for key in sorted(branches))
    return (
        "The validation of this pipeline run failed. Choose the remediation route.\n\n"
        f"Routes (answer with exactly one of these ids):\n{options}\n\n"
        f"Validation results:\n{validation_section(validations)}\n\n"
        "Answer with route, rationale (at most three sentences) and confidence."
    )


def choose_route(claude: Claude, *, validations: Sequence[StageResult], branches: Mapping[str, str]) -> RouteDecision:
    """Ask Claude which of ``branches`` (task id -> what it is for) fits the failed validations.

    :returns: the decision, with the sorted options, the model and the usage of the call.
    :raises ModelCallError: no valid route within the policy (the caller takes its fallback).
    """
    options = sorted(branches)
    answer = claude.ask(
        "route", system=ROUTE_SYSTEM, user=route_prompt(validations, branches), output=route_answer_model(options)
    )
    route = str(getattr(answer.value, "route", ""))
    if route not in options:  # never trust the schema alone
        raise ModelCallError("off_contract", f"route {route!r} is not one of {options}", usage=answer.usage)
    return RouteDecision(
        route=route,
        rationale=str(getattr(answer.value, "rationale", "")),
        confidence=float(getattr(answer.value, "confidence", 0.0)),
        options=options,
        model=answer.model,
        usage=answer.usage,
    )
