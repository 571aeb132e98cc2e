"""Claude faults: every way the model can fail ends in bounded time, in the declared fallback or a clear error.

Claude is FakeClaude on loopback, reached through the real ``anthropic`` client. Two layers:

- the agent layer: each judgment point (route, diagnose, SQL) against each fault, with a stated
  policy; the call must raise ``ModelCallError`` with the fault's reason within the stated bound;
- real Airflow runs (``dag.test()``): RemediationBranchOperator in ``tests/dags/claude_routing.py``
  takes its ``fallback`` for each fault within a bound on the ``route`` task's duration, and
  ``tests/faults/dags/faults_claude.py`` spends its run budget mid-run (a diagnosis, then a route
  whose repair no longer fits the budget) or meets a Claude that is down for every call.

Bounds are wall-clock seconds stated per case; they include slack for a busy 2-core machine.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_agent_provider.agents.calls import Budget, CallPolicy
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.diagnosis import diagnose
from airflow_agent_provider.agents.routing import choose_route
from airflow_agent_provider.agents.sql import write_sql
from airflow_agent_provider.contracts import Transformation, Usage
from airflow_agent_provider.exceptions import BudgetExhausted, ModelCallError
from airflow_agent_provider.testing import FakeClaude, Fault, Reply
from tests.agents.support import failing_validation
from tests.support.dags import run_dag, task_states, xcom
from tests.support.routing import BRANCHES, answer, conf, route_seconds, routed_to

# One decision may take at most 3 s: 4 attempts of at most 1 s each, backoff from 0.2 s, waits of 1 s.
POLICY = CallPolicy(
    max_attempts=4, deadline_s=3.0, timeout_s=1.0, backoff_s=0.2, max_backoff_s=0.8, max_retry_after_s=1
)
SCHEMAS = {"events": {"user_id": "BIGINT", "amount": "DOUBLE"}}
DIAGNOSIS = {
    "summary": "null users",
    "likely_cause": "an upstream join",
    "recommendation": "quarantine",
    "severity": "high",
}
PROSE = "I would quarantine the bad rows and carry on."

OUT_OF_ENUM = {
    "route": answer("load"),
    "diagnose": Reply.json({**DIAGNOSIS, "severity": "apocalyptic"}),
}


def ran(dag_run: Any) -> list[str]:
    """The routes of faults_claude that ran (``load`` is downstream but never a declared route)."""
    states = task_states(dag_run)
    return sorted(t for t in ["proceed", "quarantine_rows", "escalate", "load"] if states[t] == "success")


def decide(point: str, client: Any, budget: Budget | None = None) -> Any:
    """One decision at ``point`` with the stated policy."""
    claude = Claude.of(client, policy=POLICY, budget=budget)
    if point == "route":
        return choose_route(claude, validations=[failing_validation()], branches=BRANCHES)
    if point == "diagnose":
        return diagnose(claude, failing_validation())
    totals = Transformation(name="totals", type="sql", description="Total amount per user.")
    return write_sql(claude, totals, SCHEMAS)


# (fault, reason, most HTTP requests, bound in seconds)
FAULTS = [
    pytest.param(Fault.rate_limited(retry_after=3600), "rate_limited", 1, 2.0, id="429-retry-after-3600"),
    pytest.param(Fault.overloaded(), "overloaded", 4, 5.0, id="529-storm"),
    pytest.param(Fault.server_error(500), "unavailable", 4, 5.0, id="500s"),
    pytest.param(Fault.server_error(502), "unavailable", 4, 5.0, id="502-html-body"),
    pytest.param(Fault.slow(30), "timeout", 4, 6.0, id="timeouts-slow-replies"),
    pytest.param(Fault.spend_limit(), "rate_limited", 1, 2.0, id="spend-limit"),
    pytest.param(Reply.text(PROSE), "off_contract", 3, 4.0, id="prose"),
    pytest.param(Reply.json({"verdict": "fine", "confidence": 7}), "off_contract", 3, 4.0, id="out-of-schema-json"),
    pytest.param(Reply.refusal(), "refusal", 1, 2.0, id="refusal"),
    pytest.param(Reply.max_tokens('{"route": "quaran'), "max_tokens", 1, 2.0, id="max-tokens"),
]
POINTS = ["route", "diagnose", "sql"]


class TestEveryJudgmentPointFailsInBoundedTime:
    @pytest.mark.parametrize("point", POINTS)
    @pytest.mark.parametrize(("item", "reason", "requests", "bound_s"), FAULTS)
    def test_with_the_reason_and_what_was_spent(
        self, *, fake: FakeClaude, client: Any, point: str, item: Any, reason: str, requests: int, bound_s: float
    ) -> None:
        fake.add(item)
        started = time.monotonic()
        with pytest.raises(ModelCallError) as raised:
            decide(point, client)
        elapsed = time.monotonic() - started
        assert raised.value.reason == reason, raised.value
        assert elapsed < bound_s, f"{point}/{reason} took {elapsed:.1f}s (bound {bound_s}s)"
        assert 1 <= len(fake.messages_requests) <= requests
        billed = sum(1 for r in fake.messages_requests if r.response_status == 200)
        assert raised.value.usage is not None and raised.value.usage.model_calls == billed

    @pytest.mark.parametrize("point", sorted(OUT_OF_ENUM))
    def test_an_answer_outside_the_declared_values_is_never_returned(
        self, fake: FakeClaude, client: Any, point: str
    ) -> None:
        fake.add(OUT_OF_ENUM[point])
        started = time.monotonic()
        with pytest.raises(ModelCallError) as raised:
            decide(point, client)
        assert raised.value.reason == "off_contract"
        assert time.monotonic() - started < 4.0
        assert len(fake.messages_requests) == 3  # the answer and two repairs, no more


class TestBudgetExhaustedMidRun:
    def test_a_repair_that_no_longer_fits_stops_before_its_request(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.json(DIAGNOSIS), match={"schema_title": "Diagnosis"})
        fake.add(Reply.text(PROSE), match={"schema_title": "RouteDecision"})
        budget = Budget(max_model_calls=2)
        decide("diagnose", client, budget)
        started = time.monotonic()
        with pytest.raises(BudgetExhausted) as raised:
            decide("route", client, budget)
        assert time.monotonic() - started < 2.0
        assert raised.value.reason == "budget_exhausted"
        assert raised.value.usage is not None and raised.value.usage.model_calls == 1  # the prose was billed
        assert len(fake.messages_requests) == 2 and budget.spent.model_calls == 2

    def test_once_spent_no_further_decision_sends_anything(self, fake: FakeClaude, client: Any) -> None:
        budget = Budget(max_cost_usd=0.000_001)
        for point in POINTS:
            with pytest.raises(BudgetExhausted):
                decide(point, client, budget)
        assert fake.messages_requests == []


# ---------------------------------------------------------------------------------------------- real runs

RUN_FAULTS = [
    pytest.param(Fault.overloaded(), "overloaded", 10.0, id="529-storm"),
    pytest.param(Fault.server_error(500), "unavailable", 10.0, id="500s"),
    pytest.param(Fault.slow(60), "timeout", 16.0, id="slow-replies-past-the-10s-decision-timeout"),
    pytest.param(Reply.json({"route": "escalate", "confidence": 7}), "off_contract", 8.0, id="out-of-schema-json"),
    pytest.param(Reply.refusal(), "refusal", 6.0, id="refusal"),
    pytest.param(Reply.max_tokens('{"route": "quaran'), "max_tokens", 6.0, id="max-tokens"),
]


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestRemediationBranchRunsTakeTheFallback:
    @pytest.mark.parametrize(("item", "reason", "bound_s"), RUN_FAULTS)
    def test_within_the_bound_and_nothing_else_runs(
        self, claude_conn: FakeClaude, item: Any, reason: str, bound_s: float
    ) -> None:
        claude_conn.add(item)
        dag_run = run_dag("claude_route", conf=conf())
        assert routed_to(dag_run) == ["escalate"] and task_states(dag_run)["load"] == "skipped"
        decision = xcom(dag_run, "route", "decision")
        assert decision["fallback_used"] is True and decision["fallback_reason"].startswith(f"{reason}: ")
        assert route_seconds(dag_run) < bound_s

    def test_a_run_budget_spent_mid_decision_takes_the_fallback(
        self, claude_conn: FakeClaude, faults_dag_run: Any
    ) -> None:
        claude_conn.add(Reply.json(DIAGNOSIS), match={"schema_title": "Diagnosis"})
        claude_conn.add(Reply.text(PROSE), match={"schema_title": "RouteDecision"})
        dag_run = faults_dag_run("faults_claude")
        validation, decision = xcom(dag_run, "validate"), xcom(dag_run, "route", "decision")
        assert validation["diagnosis"]["severity"] == "high" and validation["usage"]["model_calls"] == 1
        assert ran(dag_run) == ["escalate"]
        assert decision["fallback_reason"].startswith("budget_exhausted: ")
        assert decision["usage"]["model_calls"] == 1  # the prose answer it paid for before the budget ran out
        assert len(claude_conn.messages_requests) == 2  # the repair was never sent
        assert route_seconds(dag_run) < 6.0

    def test_a_budget_in_default_args_binds_the_diagnosis_and_the_route(
        self, claude_conn: FakeClaude, faults_dag_run: Any
    ) -> None:
        claude_conn.add(Reply.json(DIAGNOSIS), match={"schema_title": "Diagnosis"})
        claude_conn.set_default(answer("quarantine_rows"))  # what the route would get, were it asked
        dag_run = faults_dag_run("faults_claude_default_budget")
        titles = [r.json["output_config"]["format"]["schema"]["title"] for r in claude_conn.messages_requests]
        assert titles == ["Diagnosis"]  # the diagnosis spent the one call; the route asked nothing
        validation = xcom(dag_run, "validate")
        assert validation["diagnosis"]["severity"] == "high" and validation["usage"]["model_calls"] == 1
        decision = xcom(dag_run, "route", "decision")
        assert ran(dag_run) == ["escalate"] and decision["fallback_used"] is True
        assert decision["fallback_reason"].startswith("budget_exhausted: model call budget spent: 1 of 1 call(s)")
        assert decision["usage"] == Usage().model_dump() and type(decision["usage"]["model_calls"]) is int

    def test_a_budget_in_default_args_that_allows_no_call_stops_the_diagnosis_too(
        self, claude_conn: FakeClaude, faults_dag_run: Any
    ) -> None:
        claude_conn.set_default(Reply.json(DIAGNOSIS))
        dag_run = faults_dag_run("faults_claude_no_budget")
        assert claude_conn.messages_requests == []
        validation = xcom(dag_run, "validate")
        assert validation.get("diagnosis") is None and validation["usage"]["model_calls"] == 0
        assert any(w.startswith("diagnosis unavailable (budget_exhausted)") for w in validation["warnings"])
        assert ran(dag_run) == ["escalate"]
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("budget_exhausted: ")

    def test_claude_down_for_every_call_still_ends_the_run_in_bounded_time(
        self, claude_conn: FakeClaude, faults_dag_run: Any
    ) -> None:
        claude_conn.set_default(Fault.overloaded())
        started = time.monotonic()
        dag_run = faults_dag_run("faults_claude")
        assert dag_run.state == "success" and ran(dag_run) == ["escalate"]
        validation = xcom(dag_run, "validate")
        assert validation["status"] == "fail" and validation.get("diagnosis") is None
        assert any(w.startswith("diagnosis unavailable (overloaded)") for w in validation["warnings"])
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("overloaded: ")
        assert time.monotonic() - started < 90.0  # the whole run, Airflow's own overhead included
