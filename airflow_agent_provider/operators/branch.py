"""RemediationBranchOperator: route a run by its validation; Claude chooses only when it failed."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BaseBranchOperator

from airflow_agent_provider.operators.base import DECISION_KEY, ClaudeStageOperator

DEFAULT_REUSE_FOR = timedelta(days=30)

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
    :param min_confidence: the confidence gate (0..1, None: off). Claude's answer below it is not
        followed: with ``require_approval`` a person decides (the proposal not preselected), otherwise
        the run takes ``fallback`` and the record says ``low_confidence`` with the value.
    :param reuse_decisions: decision memory. A failure whose signature (failing datasets, columns,
        rules and issue types, and the declared branches with their descriptions) matches an earlier
        decision of this DAG and task follows that decision's route with zero model calls; the record
        says ``reused_from`` (the run id) and ``reuse_reason``. The memory is the ``decision`` XCom of
        earlier runs (logical date not after this run's); deleting those XComs forgets it.
    :param reuse_for: how long a remembered decision is followed (a positive ``timedelta``, default 30 days).

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
        min_confidence: float | None = None,
        reuse_decisions: bool = False,
        reuse_for: timedelta = DEFAULT_REUSE_FOR,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_gate_and_memory(kwargs.get("task_id"), branches, min_confidence, reuse_decisions, reuse_for)
        self.validation = validation
        self.branches = branches
        self.on_pass = on_pass
        self.fallback = fallback
        self.require_approval = require_approval
        self.approval_timeout = approval_timeout
        self.min_confidence = None if min_confidence is None else float(min_confidence)
        self.reuse_decisions = reuse_decisions
        self.reuse_for = reuse_for

    def choose_branch(self, context: Context) -> str:
        from airflow_agent_provider.contracts import RouteDecision  # pydantic models: built at run time only

        options = self._options()
        results = _validations(self.validation)
        if results_passed(results):
            rationale = f"all {len(results)} validation(s) passed; no model call"
            decision = RouteDecision(route=self.on_pass, rationale=rationale, confidence=1.0, options=options)
            self._record(context, decision)
            return decision.route
        decision = self._decide(results, context)
        if self.require_approval and not decision.approved_by:
            self._record(context, decision.model_copy(update={"awaiting_approval": True}))
            self._request_approval(context, decision, results)
        self._record(context, decision)
        return decision.route

    def _decide(self, results: list[StageResult], context: Context) -> RouteDecision:
        """The remembered decision for this failure (``reuse_decisions``), else Claude's answer through the gate."""
        from airflow_agent_provider.agents.memory import failure_signature

        run_id = _run_id(context)
        signature = failure_signature(results, dict(self.branches)) if self.reuse_decisions else None
        if signature is not None:
            remembered = self._recall(context, results, signature, run_id)
            if remembered is not None:
                return remembered
        decision = self._gate(self._ask_claude(results, context))
        return decision.model_copy(update={"run_id": run_id, "signature": signature, "decided_at": _now()})

    def _recall(
        self, context: Context, results: list[StageResult], signature: str, run_id: str | None
    ) -> RouteDecision | None:
        """Follow the newest matching decision of an earlier run of this DAG and task (no model call)."""
        from airflow_agent_provider.agents.memory import describe_failure, recall, reused

        records = context["ti"].xcom_pull(task_ids=[self.task_id], key=DECISION_KEY, include_prior_dates=True)
        remembered = recall(
            records,
            signature=signature,
            options=sorted(self.branches),
            now=_now(),
            reuse_for=self.reuse_for,
            current_run_id=run_id,
        )
        if remembered is None:
            self.log.info("No remembered decision for this failure (signature %s); asking Claude", signature[:12])
            return None
        decision = reused(remembered, run_id=run_id or "", failure=describe_failure(results))
        self.log.info("Following the remembered route %r, no model call: %s", decision.route, decision.reuse_reason)
        return decision

    def _gate(self, decision: RouteDecision) -> RouteDecision:
        """Claude's answer below ``min_confidence`` is not followed: the fallback, or a person's choice."""
        gate = self.min_confidence
        if gate is None or decision.fallback_used or decision.confidence >= gate:
            return decision
        if self.require_approval:
            self.log.warning(
                "Claude's confidence %.2f is below min_confidence %.2f; a person decides", decision.confidence, gate
            )
            return decision.model_copy(update={"low_confidence": decision.confidence})
        reason = f"low_confidence: Claude's confidence {decision.confidence:.2f} is below min_confidence {gate:.2f}"
        self.log.warning("%s; taking the fallback %r instead of %r", reason, self.fallback, decision.route)
        return decision.model_copy(
            update={
                "route": self.fallback,
                "proposed_route": decision.route,
                "fallback_used": True,
                "fallback_reason": reason,
                "low_confidence": decision.confidence,
            }
        )

    def execute_complete(self, context: Context, event: dict[str, Any], proposed: dict[str, Any]) -> Any:
        """Resume once the person answered (or the approval timed out), record the decision, branch."""
        from airflow_agent_provider.contracts import RouteDecision

        decision = self._approved(RouteDecision.model_validate(proposed), event)
        if decision.approved_by:  # a person's decision, made in this run: what the memory keeps from now on
            update: dict[str, Any] = {"decided_at": _now(), "reused_from": None}
            if decision.reused_from:
                update["reuse_reason"] = f"proposed from memory ({decision.reuse_reason}); decided by a person"
            decision = decision.model_copy(update=update)
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
            defaults=[decision.route] if decision.route in options and decision.low_confidence is None else None,
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
        if decision.reused_from:
            source = f"memory (run {decision.reused_from}, no model call)"
        lines = [
            f"**Proposed route:** `{decision.route}`, from {source}, confidence {decision.confidence:.2f}.",
            f"**Rationale:** {decision.rationale or '-'}",
            "**Failing checks:**",
            *[f"- {text}" for text in issues],
            "**Routes:**",
            *routes,
        ]
        if decision.low_confidence is not None:
            lines.insert(1, f"**Low confidence:** below min_confidence {self.min_confidence:.2f}; not preselected.")
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


def _run_id(context: Context) -> str | None:
    run = context.get("dag_run")
    return str(run.run_id) if run is not None and getattr(run, "run_id", None) else context.get("run_id")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _check_gate_and_memory(
    task_id: Any, branches: Any, min_confidence: Any, reuse_decisions: Any, reuse_for: Any
) -> None:
    """Bad settings fail at DAG parse, naming the task: the gate outside 0..1, a non-positive
    ``reuse_for``, or memory over branches whose signature is not known before the run."""
    if min_confidence is not None:
        if isinstance(min_confidence, bool) or not isinstance(min_confidence, int | float):
            raise ValueError(f"{task_id}: min_confidence must be a number in 0..1, got {min_confidence!r}")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"{task_id}: min_confidence must be within 0..1, got {min_confidence!r}")
    if not isinstance(reuse_decisions, bool):
        raise ValueError(f"{task_id}: reuse_decisions must be True or False, got {reuse_decisions!r}")
    if not isinstance(reuse_for, timedelta):
        raise ValueError(f"{task_id}: reuse_for must be a timedelta, got {type(reuse_for).__name__}")
    if reuse_for <= timedelta(0):
        raise ValueError(f"{task_id}: reuse_for must be positive, got {reuse_for}")
    if reuse_decisions:
        _check_signature_branches(task_id, branches)


def _check_signature_branches(task_id: Any, branches: Any) -> None:
    """With memory on, ``branches`` are part of the failure signature: a literal ``{task_id: description}``
    of text, not a template, an XCom or anything that only resolves at run time."""
    if not isinstance(branches, Mapping):
        raise ValueError(
            f"{task_id}: reuse_decisions needs branches as a literal {{task_id: description}} dict "
            f"(they are part of the decision's signature), got {type(branches).__name__}"
        )
    for key, text in branches.items():
        if not isinstance(key, str) or not isinstance(text, str):
            raise ValueError(
                f"{task_id}: reuse_decisions needs text branch ids and descriptions to hash, "
                f"got {key!r}: {type(text).__name__}"
            )
        if "{{" in text or "{%" in text or "{{" in key:
            raise ValueError(
                f"{task_id}: reuse_decisions cannot hash the templated branch {key!r}: its text is only "
                "known at run time; write the description out"
            )
