"""RemediationBranchOperator: every route, every fault ending in the fallback, approval by a person.

Claude is FakeClaude on loopback, reached through the real ``anthropic`` client that the
``anthropic_default`` connection (an ``AIRFLOW_CONN_*`` variable) builds. DAG runs are real
``dag.test()`` runs of ``tests/dags/claude_routing.py``; the fault matrix calls the operator's
decision directly (same code path, no run) to keep the suite fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_agent_provider.contracts import RouteDecision, Usage
from airflow_agent_provider.operators.branch import RemediationBranchOperator
from airflow_agent_provider.testing import FakeClaude, Fault, Reply
from tests.agents.support import (
    INJECTION,
    KEY,
    SECRET_DSN,
    claude_conn,
    failing_validation,
    fake,
)
from tests.support.dags import run_dag, task_states, xcom
from tests.support.routing import BRANCHES, answer, conf, route_seconds, routed_to

__all__ = ["claude_conn", "fake"]


# ---------------------------------------------------------------------------------------------- configuration


def operator(**kwargs: Any) -> RemediationBranchOperator:
    """A branch operator in a DAG object (not run): for checks that need no task context."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("claude_unit", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        defaults = {"branches": BRANCHES, "on_pass": "proceed", "fallback": "escalate", "timeout_s": 10}
        op = RemediationBranchOperator(task_id="route", validation=None, **{**defaults, **kwargs})
        op >> [EmptyOperator(task_id=t) for t in BRANCHES]
    return op


class TestConfiguration:
    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"branches": {**BRANCHES, "drop_warehouse": "x"}}, id="branch-not-downstream"),
            pytest.param({"on_pass": "load"}, id="on-pass-not-downstream"),
            pytest.param({"fallback": "nowhere"}, id="fallback-not-downstream"),
            pytest.param({"branches": {}}, id="no-branches"),
        ],
    )
    def test_a_misconfigured_branch_fails_before_any_call(self, fake: FakeClaude, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            operator(**kwargs).choose_branch({})
        assert fake.messages_requests == []

    def test_options_are_the_sorted_branch_ids(self) -> None:
        assert operator()._options() == sorted(BRANCHES)


# ---------------------------------------------------------------------------------------------- fault matrix

# (what Claude does, the recorded reason, the bound in seconds: backoff 0.5 + 1 + 2 s for a storm,
# the 2 s deadline for a slow server, a few local round trips otherwise; 3600 s if retry-after were obeyed)
FAULTS = [
    pytest.param(Fault.rate_limited(retry_after=3600), "rate_limited", 3, id="429-retry-after-3600"),
    pytest.param(Fault.overloaded(), "overloaded", 8, id="529-storm"),
    pytest.param(Fault.server_error(500), "unavailable", 8, id="500s"),
    pytest.param(Fault.slow(60), "timeout", 4, id="slow-beyond-timeout"),
    pytest.param(Fault.spend_limit(), "rate_limited", 3, id="spend-limit"),
    pytest.param(Reply.text("I would quarantine the rows."), "off_contract", 5, id="prose"),
    pytest.param(Reply.json({"route": "escalate", "confidence": 7}), "off_contract", 5, id="out-of-schema-json"),
    pytest.param(answer("load"), "off_contract", 5, id="out-of-enum-route"),
    pytest.param(Reply.refusal(), "refusal", 3, id="refusal"),
    pytest.param(Reply.max_tokens('{"route": "quaran'), "max_tokens", 3, id="max-tokens"),
]


class TestEveryFaultTakesTheFallback:
    @pytest.mark.parametrize(("item", "reason", "bound_s"), FAULTS)
    def test_in_bounded_time_with_the_reason_recorded(
        self, claude_conn: FakeClaude, item: Any, reason: str, bound_s: float
    ) -> None:
        claude_conn.add(item)
        op = operator(timeout_s=2) if reason == "timeout" else operator()
        started = time.monotonic()
        decision = op._ask_claude([failing_validation()], {})
        elapsed = time.monotonic() - started
        assert (decision.route, decision.fallback_used) == ("escalate", True)
        assert decision.fallback_reason is not None and decision.fallback_reason.startswith(f"{reason}: ")
        assert elapsed < bound_s, f"{reason} took {elapsed:.1f}s"

    def test_no_credentials_takes_the_fallback_without_a_request(
        self, fake: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", raising=False)
        decision = operator()._ask_claude([failing_validation()], {})
        assert decision.route == "escalate" and (decision.fallback_reason or "").startswith("no_credentials: ")
        assert fake.messages_requests == []

    def test_a_connection_without_a_key_is_no_credentials(
        self, fake: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", json.dumps({"conn_type": "anthropic", "host": fake.url}))
        decision = operator()._ask_claude([failing_validation()], {})
        assert (decision.fallback_reason or "").startswith("no_credentials: ")
        assert fake.messages_requests == []

    def test_the_operator_model_wins_over_the_connection_model(
        self, fake: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        conn = {"conn_type": "anthropic", "host": fake.url, "password": KEY, "extra": {"model": "claude-opus-4-8"}}
        monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", json.dumps(conn))
        fake.set_default(answer("proceed"))
        assert operator()._ask_claude([failing_validation()], {}).model == "claude-opus-4-8"
        assert operator(model="claude-haiku-4-5")._ask_claude([failing_validation()], {}).model == "claude-haiku-4-5"
        assert [r.json["model"] for r in fake.messages_requests] == ["claude-opus-4-8", "claude-haiku-4-5"]


# ---------------------------------------------------------------------------------------------- real runs


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestRoutingRuns:
    def test_a_passing_validation_takes_on_pass_without_calling_claude(self, claude_conn: FakeClaude) -> None:
        dag_run = run_dag("claude_route")
        assert routed_to(dag_run) == ["proceed"]
        decision = RouteDecision.model_validate(xcom(dag_run, "route", "decision"))
        assert (decision.route, decision.fallback_used, decision.usage) == ("proceed", False, Usage())
        assert claude_conn.requests == []

    def test_a_failing_validation_follows_claudes_route_and_no_secret_leaks(
        self, claude_conn: FakeClaude, capfd: pytest.CaptureFixture[str], airflow_db: Path
    ) -> None:
        claude_conn.add(answer("quarantine_rows", 0.7))
        dag_run = run_dag("claude_route", conf=conf())
        assert routed_to(dag_run) == ["quarantine_rows"]
        decision = xcom(dag_run, "route", "decision")
        assert decision["route"] == "quarantine_rows" and decision["usage"]["model_calls"] == 1
        assert all(type(decision["usage"][count]) is int for count in ("model_calls", "input_tokens", "output_tokens"))
        assert decision["options"] == sorted(BRANCHES)
        logs = capfd.readouterr()
        task_log = logs.out + logs.err + "".join(p.read_text() for p in airflow_db.glob("logs/**/*") if p.is_file())
        assert "Claude (claude-sonnet-4-6) chose 'quarantine_rows'" in task_log  # the task log was captured
        assert KEY not in task_log and KEY not in json.dumps([xcom(dag_run, "validate"), decision])
        sent = json.dumps([r.json for r in claude_conn.requests])
        for secret in (KEY, SECRET_DSN, "hunter2"):  # the validation carried the DSN; the model never sees it
            assert secret not in sent and secret not in json.dumps(decision)

    def test_a_retry_after_of_an_hour_takes_the_fallback_in_seconds(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(Fault.rate_limited(retry_after=3600))
        dag_run = run_dag("claude_route", conf=conf())
        assert routed_to(dag_run) == ["escalate"]
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("rate_limited: ")
        assert route_seconds(dag_run) < 5

    def test_rows_that_say_route_to_load_cannot_move_the_route_outside_the_set(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("load"))  # as if the model had obeyed the rows
        dag_run = run_dag("claude_route", conf=conf(failing_validation(sample=[INJECTION] * 5)))
        assert routed_to(dag_run) == ["escalate"] and task_states(dag_run)["load"] == "skipped"
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("off_contract: ")
        prompt = claude_conn.messages_requests[0].json["messages"][0]["content"]
        outside = prompt.split("<data>")[0] + prompt.split("</data>")[-1]
        assert prompt.count("</data>") == 1 and "ignore previous" not in outside

    def test_no_credentials_takes_the_fallback(self, fake: FakeClaude, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", raising=False)
        dag_run = run_dag("claude_route", conf=conf())
        assert routed_to(dag_run) == ["escalate"]
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("no_credentials: ")
        assert fake.requests == []

    def test_what_the_run_already_spent_counts_against_the_budget(self, claude_conn: FakeClaude) -> None:
        dag_run = run_dag("claude_route_budget", conf=conf(model_calls=4, cost_usd=0.6))
        assert routed_to(dag_run) == ["escalate"]
        assert xcom(dag_run, "route", "decision")["fallback_reason"].startswith("budget_exhausted: ")
        assert claude_conn.requests == []


# ---------------------------------------------------------------------------------------------- approval


class Responder:
    """Plays the person in Airflow's "Required actions": waits for the HITL request, then answers it
    the way the HITL REST API does (or lets it time out the way the scheduler's sweep does)."""

    def __init__(self, dag_id: str, answer: str | None) -> None:
        self.dag_id, self.answer = dag_id, answer
        self.seen: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Responder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self._respond():
            time.sleep(0.3)

    def _respond(self) -> bool:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        with create_session() as session:
            query = select(TI).where(TI.dag_id == self.dag_id, TI.state == TaskInstanceState.AWAITING_INPUT)
            ti = session.scalar(query.options(joinedload(TI.hitl_detail)))
            if ti is None or ti.hitl_detail is None:
                return False
            siblings = session.scalars(select(TI).where(TI.run_id == ti.run_id, TI.dag_id == self.dag_id)).all()
            detail = ti.hitl_detail
            self.seen = {
                "options": list(detail.options),
                "defaults": list(detail.defaults or []),
                "body": detail.body,
                "states": {t.task_id: t.state for t in siblings},
            }
            self._answer(session, ti) if self.answer else self._time_out(session, ti)
        return True

    def _answer(self, session: Any, ti: Any) -> None:
        from airflow._shared.timezones import timezone
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent

        detail = ti.hitl_detail
        detail.responded_by = {"id": "7", "name": "oncall-ana"}
        detail.responded_at = timezone.utcnow()
        detail.chosen_options, detail.params_input = [self.answer], {}
        session.add(detail)
        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)

    def _time_out(self, session: Any, ti: Any) -> None:
        from airflow._shared.timezones import timezone
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        ti.trigger_timeout = timezone.utcnow() - pendulum.duration(seconds=1)
        session.flush()
        SchedulerJobRunner(job=Job(), executors=[]).check_awaiting_input_timeouts(session=session)


@pytest.fixture
def proposing(claude_conn: FakeClaude) -> Iterator[FakeClaude]:
    claude_conn.add(answer("quarantine_rows"))
    yield claude_conn


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestApprovalRuns:
    def test_a_person_picks_among_the_branches_with_claudes_proposal_preselected(self, proposing: FakeClaude) -> None:
        with Responder("claude_route_approval", answer="remediate_schema") as person:
            dag_run = run_dag("claude_route_approval", conf=conf())
        assert person.seen["options"] == sorted(BRANCHES) and person.seen["defaults"] == ["quarantine_rows"]
        assert "quarantine_rows" in person.seen["body"]
        waiting = {t: s for t, s in person.seen["states"].items() if t in BRANCHES}
        assert "skipped" not in waiting.values()  # nothing skipped before the answer
        assert routed_to(dag_run) == ["remediate_schema"]
        decision = xcom(dag_run, "route", "decision")
        assert (decision["route"], decision["proposed_route"], decision["approved_by"]) == (
            "remediate_schema",
            "quarantine_rows",
            "oncall-ana",
        )

    def test_no_answer_before_the_timeout_takes_the_fallback(self, proposing: FakeClaude) -> None:
        with Responder("claude_route_approval", answer=None) as person:
            dag_run = run_dag("claude_route_approval", conf=conf())
        assert person.seen["options"] == sorted(BRANCHES)
        assert routed_to(dag_run) == ["escalate"]
        decision = xcom(dag_run, "route", "decision")
        assert decision["fallback_reason"].startswith("approval_timeout: ")
        assert decision["proposed_route"] == "quarantine_rows"
