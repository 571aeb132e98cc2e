"""Claude as every judgment point reaches it: one object holds the client, the models, the bounds and the budget.

The operators build one ``Claude`` per task from its connection and the run's budget; the agent
functions (``diagnose``, ``choose_route``, ``propose_fix``, ``write_sql``, ``SqlWriter``, ``remediate``)
take it and ask through :meth:`Claude.ask`, so the model is resolved and the budget charged in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from pydantic import BaseModel

from airflow_agent_provider.agents.calls import Answer, Budget, CallPolicy, call_structured
from airflow_agent_provider.agents.models import MAX_OUTPUT_TOKENS, TIERS, JudgmentPoint
from airflow_agent_provider.agents.pricing import PriceTable

T = TypeVar("T", bound=BaseModel)


def _no_default_model() -> str | None:
    return None


@dataclass
class Claude:
    """The client (made on first use), the model of each judgment point, a decision's bounds and the budget.

    :param connect: returns an ``anthropic`` client built with ``max_retries=0``; called on the first
        question only, so cached plans and passing validations need no credentials. Raises
        ``ModelCallError`` when there is no client to build.
    :param model: the model of every judgment point; None: ``default_model``, else the point's tier.
    :param default_model: returns the connection's default model (None when it names none).
    :param policy: the bounds of one decision; ``max_tokens`` is set per judgment point.
    :param budget: what the run may still spend (None: no limit); every question here charges it.
    :param prices: a price table instead of ``pricing.PRICES``.
    """

    connect: Callable[[], Any]
    model: str | None = None
    default_model: Callable[[], str | None] = _no_default_model
    policy: CallPolicy = field(default_factory=CallPolicy)
    budget: Budget | None = None
    prices: PriceTable | None = None

    @classmethod
    def of(cls, client: Any, **settings: Any) -> Claude:
        """Claude through an ``anthropic`` client already built (tests, notebooks, benchmarks)."""
        return cls(lambda: client, **settings)

    @cached_property
    def client(self) -> Any:
        return self.connect()

    @cached_property
    def _connection_model(self) -> str | None:
        return self.default_model()

    def model_for(self, point: JudgmentPoint) -> str:
        """The operator's model, else the connection's default model, else the tier default of ``point``."""
        if point not in TIERS:
            raise ValueError(f"unknown judgment point {point!r}; expected one of {sorted(TIERS)}")
        return self.model or self._connection_model or TIERS[point]

    def policy_for(self, point: JudgmentPoint) -> CallPolicy:
        return dataclasses.replace(self.policy, max_tokens=MAX_OUTPUT_TOKENS[point])

    def ask(
        self,
        point: JudgmentPoint,
        *,
        system: str,
        user: str,
        output: type[T],
        check: Callable[[T], None] | None = None,
    ) -> Answer[T]:
        """One structured question at ``point`` (see ``calls.call_structured``); raises ``ModelCallError``."""
        return call_structured(
            self.client,
            model=self.model_for(point),
            system=system,
            user=user,
            output=output,
            policy=self.policy_for(point),
            budget=self.budget,
            prices=self.prices,
            check=check,
        )
