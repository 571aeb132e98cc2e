"""The provider's custom run facets: how a run was routed, and how its data was remediated.

``agentRouteDecision`` (``RemediationBranchOperator``) and ``agentRemediation``
(``SchemaRemediationOperator``). Their JSON schemas ship in this package (``lineage/schemas``) and
each facet's ``_schemaURL`` names its schema (``$id`` + ``#/$defs/<Facet>``).

Imported only while the OpenLineage listener asks for facets: the facet classes subclass
OpenLineage's ``RunFacet`` and so import the OpenLineage client when this module loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

import attr
from openlineage.client.generated.base import RunFacet

from airflow_agent_provider.contracts import RouteDecision, StageResult, Usage

SCHEMA_BASE = "https://raw.githubusercontent.com/airflow-agent-provider/airflow-agent-provider/main/airflow_agent_provider/lineage/schemas/"
ROUTE_FACET = "agentRouteDecision"
REMEDIATION_FACET = "agentRemediation"

DecidedBy = Literal["claude", "fallback", "person", "rule"]


@attr.define
class ModelUsage:
    """Model calls, tokens and cost in USD."""

    modelCalls: int = 0
    inputTokens: int = 0
    outputTokens: int = 0
    costUsd: float = 0.0


@attr.define
class AgentRouteDecisionRunFacet(RunFacet):
    """The route a run took after validation, who decided it, and what deciding cost."""

    route: str
    options: list[str]
    decidedBy: str
    confidence: float
    rationale: str | None = attr.field(default=None)
    fallbackReason: str | None = attr.field(default=None)
    proposedRoute: str | None = attr.field(default=None)
    approvedBy: str | None = attr.field(default=None)
    model: str | None = attr.field(default=None)
    usage: ModelUsage = attr.field(factory=ModelUsage)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("AgentRouteDecisionRunFacet")


@attr.define
class RemediationIteration:
    """One round: the plan's actions, its outcome and what validation still found."""

    iteration: int
    outcome: str
    actions: list[str] = attr.field(factory=list)
    remainingIssues: int = 0


@attr.define
class AgentRemediationRunFacet(RunFacet):
    """How Claude's fix plans went: each iteration, the final status, model and cost."""

    dataset: str
    status: str
    iterations: list[RemediationIteration] = attr.field(factory=list)
    decidedBy: str = attr.field(default="claude")
    stoppedBecause: str | None = attr.field(default=None)
    model: str | None = attr.field(default=None)
    usage: ModelUsage = attr.field(factory=ModelUsage)

    @staticmethod
    def _get_schema() -> str:
        return schema_url("AgentRemediationRunFacet")


def schema_url(facet: str) -> str:
    return f"{SCHEMA_BASE}{facet}.json#/$defs/{facet}"


@cache
def facet_schema(facet: str) -> dict[str, Any]:
    """The JSON schema of one of our facets, as shipped in the package."""
    text = resources.files("airflow_agent_provider.lineage").joinpath("schemas", f"{facet}.json").read_text()
    return dict(json.loads(text))


def decided_by(decision: RouteDecision) -> DecidedBy:
    """Who chose the route: a person (approval), the fallback, Claude, or the rule that all checks passed."""
    if decision.approved_by:
        return "person"
    if decision.fallback_used:
        return "fallback"
    return "claude" if decision.model else "rule"


def route_facet(decision: RouteDecision) -> AgentRouteDecisionRunFacet:
    return AgentRouteDecisionRunFacet(
        route=decision.route,
        options=list(decision.options),
        decidedBy=decided_by(decision),
        confidence=decision.confidence,
        rationale=decision.rationale or None,
        fallbackReason=decision.fallback_reason,
        proposedRoute=decision.proposed_route,
        approvedBy=decision.approved_by,
        model=decision.model,
        usage=model_usage(decision.usage),
    )


def remediation_facet(
    dataset: str,
    status: str,
    iterations: list[Mapping[str, Any]],
    *,
    usage: Usage | Mapping[str, Any] | None = None,
    model: str | None = None,
    stopped_because: str | None = None,
) -> AgentRemediationRunFacet:
    return AgentRemediationRunFacet(
        dataset=dataset,
        status=status,
        iterations=[_iteration(record) for record in iterations],
        stoppedBecause=stopped_because,
        model=model,
        usage=model_usage(usage),
    )


def remediation_facet_of(result: StageResult, dataset: str, model: str | None) -> AgentRemediationRunFacet:
    return remediation_facet(
        dataset, result.status, list(result.metrics.get("iterations") or []), usage=result.usage, model=model
    )


def model_usage(usage: Usage | Mapping[str, Any] | None) -> ModelUsage:
    """The facet's usage; input tokens count cache writes and reads too (``Usage.total_input_tokens``)."""
    spent = usage if isinstance(usage, Usage) else Usage.model_validate(dict(usage or {}))
    return ModelUsage(
        modelCalls=spent.model_calls,
        inputTokens=spent.total_input_tokens,
        outputTokens=spent.output_tokens,
        costUsd=spent.cost_usd,
    )


def _iteration(record: Mapping[str, Any]) -> RemediationIteration:
    plan = record.get("plan") or {}
    actions = [str(action.get("action")) for action in plan.get("actions") or [] if isinstance(action, Mapping)]
    return RemediationIteration(
        iteration=int(record.get("iteration", 0)),
        outcome=str(record.get("outcome", "unknown")),
        actions=actions,
        remainingIssues=len(record.get("issues") or []),
    )
