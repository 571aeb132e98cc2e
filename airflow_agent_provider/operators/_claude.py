"""Claude for the operators: the client from the ``anthropic`` connection, budgets, and the hook points.

The connection is the ``anthropic`` type of ``apache-airflow-providers-anthropic`` (default
``anthropic_default``): password = API key, host = base URL (a gateway, or FakeClaude in tests),
extra ``model`` = the default model. The client comes from ``AnthropicHook`` with the SDK's own
retries off (``max_retries=0``): the agent layer retries within a bounded budget instead.

``diagnose_result`` and ``sql_writer`` are self-contained so the data operators can call them
from their hook points; they read ``model``, ``claude_conn_id``, ``plans_folder``,
``max_cost_usd``, ``max_model_calls`` and ``timeout_s`` from the operator when it has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow_agent_provider import settings
from airflow_agent_provider.agents.calls import Budget, CallPolicy
from airflow_agent_provider.agents.models import MAX_OUTPUT_TOKENS, JudgmentPoint, resolve_model
from airflow_agent_provider.agents.plans import PlanCache
from airflow_agent_provider.agents.sql import SqlWriter
from airflow_agent_provider.contracts import StageResult, Usage
from airflow_agent_provider.exceptions import ModelCallError

DEFAULT_CONN_ID = "anthropic_default"
DEFAULT_TIMEOUT_S = 60.0
PER_ATTEMPT_TIMEOUT_S = 30.0


class Claude:
    """The Claude connection of one task: a lazily built client and the connection's default model.

    :param conn_id: an ``anthropic`` connection id.
    :param timeout_s: the deadline of one decision (retries included).
    """

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.conn_id = conn_id
        self.timeout_s = float(timeout_s)

    @cached_property
    def _hook(self) -> Any:
        from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

        return AnthropicHook(conn_id=self.conn_id)

    @cached_property
    def _extra(self) -> Mapping[str, Any]:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            connection = self._hook.get_connection(self.conn_id)
        except AirflowNotFoundException as err:
            raise ModelCallError("no_credentials", f"no Airflow connection {self.conn_id!r} is defined") from err
        extra = dict(connection.extra_dejson or {})
        keyless = extra.get("workload_identity") or (extra.get("platform") or "anthropic") != "anthropic"
        if not connection.password and not keyless:
            raise ModelCallError("no_credentials", f"connection {self.conn_id!r} has no API key (its password)")
        return extra

    @cached_property
    def client(self) -> Any:
        """An ``anthropic`` client with SDK retries off; ``ModelCallError('no_credentials')`` if none."""
        self._extra  # noqa: B018 - fails early and clearly when the connection or key is missing
        per_attempt = min(PER_ATTEMPT_TIMEOUT_S, self.timeout_s)
        return self._hook.get_conn().with_options(max_retries=0, timeout=per_attempt)

    def connect(self) -> tuple[Any, str | None]:
        """(client, the connection's default model) for ``SqlWriter``."""
        return self.client, self._extra.get("model")

    def model(self, point: JudgmentPoint, operator_model: str | None) -> str:
        """Operator ``model`` > connection extra ``model`` > the tier default for ``point``."""
        if operator_model:
            return operator_model
        try:
            return resolve_model(point, None, self._extra.get("model"))
        except ModelCallError:
            return resolve_model(point)

    def policy(self, point: JudgmentPoint) -> CallPolicy:
        per_attempt = min(PER_ATTEMPT_TIMEOUT_S, self.timeout_s)
        return CallPolicy(deadline_s=self.timeout_s, timeout_s=per_attempt, max_tokens=MAX_OUTPUT_TOKENS[point])


def claude_for(operator: Any) -> Claude:
    conn_id = getattr(operator, "claude_conn_id", None) or DEFAULT_CONN_ID
    return Claude(conn_id, timeout_s=getattr(operator, "timeout_s", None) or DEFAULT_TIMEOUT_S)


def run_budget(operator: Any, context: Mapping[str, Any]) -> Budget | None:
    """The operator's per-run budget (what earlier tasks of the run spent counts), or None without limits."""
    from airflow_agent_provider.operators._common import usage_so_far

    max_cost, max_calls = getattr(operator, "max_cost_usd", None), getattr(operator, "max_model_calls", None)
    if max_cost is None and max_calls is None:
        return None
    return Budget(max_cost_usd=max_cost, max_model_calls=max_calls, spent=usage_so_far(context))


def diagnose_result(operator: Any, result: StageResult, context: Mapping[str, Any]) -> StageResult:
    """``result`` with Claude's diagnosis and recommendation, its usage added; unchanged but for a
    warning when Claude is unavailable (a diagnosis is advice, never a reason to fail)."""
    from airflow_agent_provider.agents.diagnosis import diagnose

    claude = claude_for(operator)
    try:
        model = claude.model("diagnose", getattr(operator, "model", None))
        diagnosis, usage = diagnose(
            claude.client, result, model=model, policy=claude.policy("diagnose"), budget=run_budget(operator, context)
        )
    except ModelCallError as err:
        operator.log.warning("No diagnosis from Claude (%s): %s", err.reason, err)
        warning = f"diagnosis unavailable ({err.reason}): {err}"
        spent = result.usage + (err.usage or Usage())
        return result.model_copy(update={"usage": spent, "warnings": [*result.warnings, warning]})
    operator.log.info("Claude's diagnosis (%s, %s): %s", model, diagnosis.severity, diagnosis.summary)
    update = {"diagnosis": diagnosis, "recommendation": diagnosis.recommendation, "usage": result.usage + usage}
    return result.model_copy(update=update)


def plans_folder(operator: Any = None) -> Path:
    """``operator.plans_folder``, else the ``[agent_provider] plans_folder`` setting."""
    configured = getattr(operator, "plans_folder", None)
    return Path(configured) if configured else settings.plans_folder()


def sql_writer(operator: Any, context: Mapping[str, Any]) -> SqlWriter:
    """The transform engine's ``write_sql``: cached plans first, then Claude; every query checked.

    Add ``writer.usage`` to the stage result's usage after the transformations ran.
    """
    claude = claude_for(operator)
    return SqlWriter(
        claude.connect,
        cache=PlanCache(plans_folder(operator)),
        model=getattr(operator, "model", None),
        policy=claude.policy("sql"),
        budget=run_budget(operator, context),
    )
