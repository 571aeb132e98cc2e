"""RemediationBranchOperator: route a run by its validation; Claude chooses only when it failed."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BaseBranchOperator

from airflow_agent_provider.operators.base import DECISION_KEY, ClaudeStageOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_agent_provider.contracts import RouteDecision, StageResult


class RemediationBranchOperator(ClaudeStageOperator, BaseBranchOperator):
    """Follow ``on_pass`` when every validation passed (no model call); otherwise let Claude choose.

    Claude is offered the ``branches`` (sorted task ids with their descriptions) as a closed choice;
    an answer outside them is never followed. When Claude cannot answer in time (no credentials,
    rate limited, overloaded, refused, off-contract, budget spent) the run takes ``fallback`` and the
    log says why. The decision record (``contracts.RouteDecision``) is pushed to XCom key
    ``decision`` before anything is skipped.

    :param validation: the validation result(s) to route on (templated; ``validate_task.output`` or a list).
    :param branches: ``{task_id: what this route is for}``; every key must be a direct downstream task.
    :param on_pass: the downstream task id to follow when every validation passed.
    :param fallback: the downstream task id to follow when Claude cannot decide (or the approval times out).
    :param require_approval: hand the proposed route to a person (Airflow's human-in-the-loop
        "Required actions"); they pick among the branches, the proposal preselected.
    :param approval_timeout: how long to wait for the person before taking ``fallback`` (None: no limit).

    Claude is asked with the settings of ``ClaudeStageOperator`` (``model``, ``claude_conn_id``,
    ``timeout_s``, ``max_cost_usd``, ``max_model_calls``).
    """

    template_fields: Collection[str] = ("validation", "branches", *ClaudeStageOperator.claude_template_fields)
    ui_color = "#f4e2d8"
    stage = "branch"

    def __init__(
        self,
        *,
        validation: Any,
        branches: Mapping[str, str],
        on_pass: str,
        fallback: str,
        require_approval: bool = False,
        approval_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.validation = validation
        self.branches = branches
        self.on_pass = on_pass
        self.fallback = fallback
        self.require_approval = require_approval
        self.approval_timeout = approval_timeout

    def choose_branch(self, context: Context) -> str:
        from airflow_agent_provider.contracts import RouteDecision  # pydantic models: built at run time only

        options = self._options()
        results = _validations(self.validation)
        if results_passed(results):
            rationale = f"all {len(results)} validation(s) passed; no model call"
            decision = RouteDecision(route=self.on_pass, rationale=rationale, confidence=1.0, options=options)
        else:
            decision = self._ask_claude(results, context)
        self._record(context, decision)
        if self.require_approval and not results_passed(results):
            self._request_approval(context, decision, results)
        return decision.route

    def execute_complete(self, context: Context, event: dict[str, Any], proposed: dict[str, Any]) -> Any:
        """Resume once the person answered (or the approval timed out), record the decision, branch."""
        from airflow_agent_provider.contracts import RouteDecision

        decision = self._approved(RouteDecision.model_validate(proposed), event)
        self._record(context, decision)
        return self.do_branch(context, decision.route)

    def _options(self) -> list[str]:
        """The sorted branch ids, after checking them against the DAG (before any model call)."""
        if not isinstance(self.branches, Mapping) or not self.branches:
            raise ValueError(f"{self.task_id}: branches must be a non-empty {{task_id: description}} dict")
        downstream = set(self.downstream_task_ids)
        unknown = sorted(set(self.branches) - downstream)
        if unknown:
            raise ValueError(f"{self.task_id}: branches {unknown} are not downstream tasks {sorted(downstream)}")
        for name, task_id in (("on_pass", self.on_pass), ("fallback", self.fallback)):
            if task_id not in downstream:
                raise ValueError(f"{self.task_id}: {name}={task_id!r} is not a downstream task {sorted(downstream)}")
        return sorted(self.branches)

    def _ask_claude(self, results: list[StageResult], context: Context) -> RouteDecision:
        from airflow_agent_provider.agents.routing import choose_route
        from airflow_agent_provider.contracts import RouteDecision, Usage
        from airflow_agent_provider.exceptions import ModelCallError

        claude = self.claude(context)
        try:
            decision = choose_route(claude, validations=results, branches=dict(self.branches))
        except ModelCallError as err:
            reason = f"{err.reason}: {err}"
            self.log.warning("Claude gave no route (%s); taking the fallback %r", reason, self.fallback)
            return RouteDecision(
                route=self.fallback, options=sorted(self.branches), model=claude.model_for("route"),
                usage=err.usage or Usage(), fallback_used=True, fallback_reason=reason,
            )  # fmt: skip
        self.log.info(
            "Claude (%s) chose %r with confidence %.2f: %s",
            decision.model,
            decision.route,
            decision.confidence,
            decision.rationale,
        )
        return decision

    def _approval_options(self) -> list[str]:
        return sorted({*self.branches, self.fallback})

    def _request_approval(self, context: Context, decision: RouteDecision, results: list[StageResult]) -> None:
        """Write the Human-in-the-loop request and park the task until a person answers; skips nothing."""
        from airflow.sdk.exceptions import TaskAwaitingInput
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        options = self._approval_options()
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=options,
            subject=f"Remediation route for {context['ti'].dag_id}: proposed {decision.route!r}",
            body=self._approval_body(decision, results),
            defaults=[decision.route] if decision.route in options else None,
            multiple=False,
            params={},
            assigned_users=None,
        )
        self.log.info("Waiting for a person to approve route %r (options %s)", decision.route, options)
        proposed = decision.model_dump(mode="json")
        raise TaskAwaitingInput(
            method_name="execute_complete", kwargs={"proposed": proposed}, timeout=self.approval_timeout
        )

    def _approval_body(self, decision: RouteDecision, results: list[StageResult]) -> str:
        issues = [issue.summary()[:300] for result in results for issue in result.issues][:5]
        fallback = f"the fallback ({decision.fallback_reason})"
        source = fallback if decision.fallback_used else f"Claude ({decision.model})"
        routes = [f"- `{key}`: {self.branches.get(key, 'the fallback route')}" for key in self._approval_options()]
        lines = [
            f"**Proposed route:** `{decision.route}`, from {source}, confidence {decision.confidence:.2f}.",
            f"**Rationale:** {decision.rationale or '-'}",
            "**Failing checks:**",
            *[f"- {text}" for text in issues],
            "**Routes:**",
            *routes,
        ]
        if self.approval_timeout:
            lines.append(f"Without an answer within {self.approval_timeout} the run takes `{self.fallback}`.")
        return "\n".join(lines)

    def _approved(self, proposed: RouteDecision, event: Mapping[str, Any]) -> RouteDecision:
        """The decision after the person's answer; a timeout or an answer outside the options takes the fallback."""
        base = proposed.model_copy(update={"proposed_route": proposed.route})
        chosen = list(event.get("chosen_options") or [])
        if event.get("error") or event.get("timedout"):
            reason = f"approval_timeout: nobody answered within {self.approval_timeout}"
        elif len(chosen) != 1 or chosen[0] not in self._approval_options():
            reason = f"approval: the answer {chosen} is not one of {self._approval_options()}"
        else:
            user = event.get("responded_by_user") or {}
            who = str(user.get("name") or user.get("id") or "unknown")
            self.log.info("%s approved route %r (proposed %r)", who, chosen[0], proposed.route)
            return base.model_copy(update={"route": chosen[0], "approved_by": who, "fallback_used": False})
        self.log.warning("No usable approval (%s); taking the fallback %r", reason, self.fallback)
        return base.model_copy(update={"route": self.fallback, "fallback_used": True, "fallback_reason": reason})

    def _record(self, context: Context, decision: RouteDecision) -> None:
        """Push the decision before branching: a branch that skips loses its return value."""
        record = self.keep_for_lineage(context, decision.model_dump(mode="json"))
        context["ti"].xcom_push(key=DECISION_KEY, value=record)


def results_passed(results: list[StageResult]) -> bool:
    return all(result.passed for result in results)


def _validations(value: Any) -> list[StageResult]:
    from airflow_agent_provider.contracts import parse_upstream

    results = parse_upstream(value)
    if not results:
        raise ValueError("validation is empty: pass a validation result (validate_task.output) or a list of them")
    return results
