"""Claude for the operators: the agent layer's ``Claude`` from the ``anthropic`` connection and the run's budget.

The connection is the ``anthropic`` type of ``apache-airflow-providers-anthropic`` (default
``anthropic_default``), read by its ``AnthropicHook``: the hook builds the client for the
connection's platform and credentials (API key, workload identity, or none: the SDK's environment),
with the SDK's own retries off (``max_retries=0``) because the agent layer retries within bounds.
When no credentials resolve, the first question fails as ``no_credentials`` before any request.
The connection's extra ``model`` is the default model of every judgment point.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_agent_provider import settings
from airflow_agent_provider.operators.base import DECISION_KEY, DEFAULT_CLAUDE_CONN_ID, DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from airflow_agent_provider.agents.calls import Budget
    from airflow_agent_provider.agents.claude import Claude
    from airflow_agent_provider.contracts import StageResult, Usage

PER_ATTEMPT_TIMEOUT_S = 30.0


def connect(
    context: Mapping[str, Any],
    *,
    model: str | None = None,
    claude_conn_id: str = DEFAULT_CLAUDE_CONN_ID,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_cost_usd: float | None = None,
    max_model_calls: int | None = None,
) -> Claude:
    """Claude for a task, its settings as documented on ``ClaudeStageOperator``.

    Nothing is read before the first question: the connection when the client or the model is first
    needed; the run's earlier spending (XCom of the other tasks) only when there is a budget.
    """
    from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

    from airflow_agent_provider.agents.calls import CallPolicy
    from airflow_agent_provider.agents.claude import Claude

    hook = AnthropicHook(conn_id=claude_conn_id or DEFAULT_CLAUDE_CONN_ID)
    per_attempt = min(PER_ATTEMPT_TIMEOUT_S, float(timeout_s))
    return Claude(
        lambda: _client(hook, per_attempt),
        model=model or None,
        default_model=lambda: _connection_model(hook),
        policy=CallPolicy(deadline_s=float(timeout_s), timeout_s=per_attempt),
        budget=run_budget(context, max_cost_usd, max_model_calls),
    )


def _client(hook: Any, per_attempt_s: float) -> Any:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_agent_provider.exceptions import ModelCallError

    try:
        client = hook.get_conn()
    except AirflowNotFoundException as err:
        raise ModelCallError("no_credentials", f"no Airflow connection {hook.conn_id!r} is defined") from err
    return client.with_options(max_retries=0, timeout=per_attempt_s)


def _connection_model(hook: Any) -> str | None:
    """The connection's extra ``model`` (not ``hook.default_model``: its fallback would hide our tiers)."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return hook.get_connection(hook.conn_id).extra_dejson.get("model") or None
    except AirflowNotFoundException:
        return None


def run_budget(context: Mapping[str, Any], max_cost_usd: float | None, max_model_calls: int | None) -> Budget | None:
    """The per-run budget (what earlier tasks of the run spent counts), or None without limits."""
    from airflow_agent_provider.agents.calls import Budget

    if max_cost_usd is None and max_model_calls is None:
        return None
    return Budget(max_cost_usd=max_cost_usd, max_model_calls=max_model_calls, spent=usage_so_far(context))


def usage_so_far(context: Mapping[str, Any]) -> Usage:
    """Model usage already spent in this run: every other task's stage result and routing decision."""
    from airflow_agent_provider.contracts import RouteDecision, StageResult, Usage, parse_each

    ti, dag = context["ti"], context.get("dag")
    task_ids = [t for t in getattr(dag, "task_ids", []) if t != ti.task_id]
    if not task_ids:
        return Usage()
    results = parse_each(ti.xcom_pull(task_ids=task_ids, key="return_value"), StageResult)
    decisions = parse_each(ti.xcom_pull(task_ids=task_ids, key=DECISION_KEY), RouteDecision)
    return sum((r.usage for r in results), Usage()) + sum((d.usage for d in decisions), Usage())


def diagnose_result(claude: Claude, result: StageResult, log: Any) -> StageResult:
    """``result`` with Claude's diagnosis and recommendation, its usage added; unchanged but for a
    warning when Claude is unavailable (a diagnosis is advice, never a reason to fail)."""
    from airflow_agent_provider.agents.diagnosis import diagnose
    from airflow_agent_provider.contracts import Usage
    from airflow_agent_provider.exceptions import ModelCallError

    try:
        diagnosis, usage = diagnose(claude, result)
    except ModelCallError as err:
        log.warning("No diagnosis from Claude (%s): %s", err.reason, err)
        warning = f"diagnosis unavailable ({err.reason}): {err}"
        spent = result.usage + (err.usage or Usage())
        return result.model_copy(update={"usage": spent, "warnings": [*result.warnings, warning]})
    log.info("Claude's diagnosis (%s, %s): %s", claude.model_for("diagnose"), diagnosis.severity, diagnosis.summary)
    update = {"diagnosis": diagnosis, "recommendation": diagnosis.recommendation, "usage": result.usage + usage}
    return result.model_copy(update=update)


def plans_folder(configured: str | None = None) -> Path:
    """``configured`` (an operator's ``plans_folder``), else the ``[agent_provider] plans_folder`` setting."""
    return Path(configured) if configured else settings.plans_folder()
