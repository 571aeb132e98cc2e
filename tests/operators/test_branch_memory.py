"""RemediationBranchOperator: the confidence gate and decision memory, in real Airflow runs.

Runs are ``dag.test()`` runs of ``tests/dags/claude_routing.py`` on successive logical dates (as a
backfill makes them); FakeClaude stands in for Claude through the real ``anthropic`` client, so its
request log counts the model calls. Every memory test starts from a DAG without runs (its memory
forgotten the documented way: the ``decision`` XComs deleted).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_agent_provider.agents.memory import failure_signature
from airflow_agent_provider.contracts import Issue, RouteDecision, StageResult
from airflow_agent_provider.operators.branch import RemediationBranchOperator
from airflow_agent_provider.testing import FakeClaude, Reply
from tests.agents.support import claude_conn, failing_validation, fake
from tests.dags.claude_routing import BRANCHES as DAG_BRANCHES
from tests.operators.test_branch import Responder
from tests.process._procs import Proc, stop_all, wait_until
from tests.support.dags import run_dag, xcom
from tests.support.routing import BRANCHES, answer, conf, routed_to

__all__ = ["claude_conn", "fake"]

PROSE = Reply.text("no idea")
DATES = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def decision_of(dag_run: Any) -> RouteDecision:
    return RouteDecision.model_validate(xcom(dag_run, "route", "decision"))


def model_calls(fake: FakeClaude) -> int:
    return len(fake.messages_requests)


def forget(*dag_ids: str) -> None:
    """Delete the DAGs' runs (their task instances and XComs go with them): no memory left."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(XComModel).where(XComModel.dag_id.in_(dag_ids)))
        session.execute(delete(DagRun).where(DagRun.dag_id.in_(dag_ids)))


def new_kind() -> StageResult:
    """Another failure: a column upstream started filling with a new event type."""
    issue = Issue(type="unexpected_value", dataset="events", column="event_type", rule="allowed_values", sample=["x"])
    return StageResult(stage="validate", status="fail", task_id="validate", issues=[issue])


@pytest.fixture
def clean(airflow_db: Path) -> Iterator[None]:
    dag_ids = ("claude_route_memory", "claude_route_memory_brief", "claude_route_memory_approval")
    forget(*dag_ids)
    yield
    forget(*dag_ids)


# ---------------------------------------------------------------------------------------------- bad input


def build(**kwargs: Any) -> RemediationBranchOperator:
    from airflow.sdk import DAG

    with DAG("claude_bad_input", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        defaults = {"branches": BRANCHES, "on_pass": "proceed", "fallback": "escalate"}
        return RemediationBranchOperator(task_id="route", validation=None, **{**defaults, **kwargs})


class TestBadInputFailsAtParse:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param({"min_confidence": 1.5}, "min_confidence must be within 0..1", id="gate-above-1"),
            pytest.param({"min_confidence": -0.1}, "min_confidence must be within 0..1", id="gate-below-0"),
            pytest.param({"min_confidence": "high"}, "min_confidence must be a number", id="gate-text"),
            pytest.param({"reuse_for": timedelta(days=-1)}, "reuse_for must be positive", id="negative-reuse-for"),
            pytest.param({"reuse_for": 30}, "reuse_for must be a timedelta", id="reuse-for-int"),
            pytest.param(
                {"reuse_decisions": True, "branches": "{{ var.json.branches }}"},
                "literal {task_id: description} dict",
                id="templated-branches",
            ),
            pytest.param(
                {"reuse_decisions": True, "branches": {**BRANCHES, "proceed": "go on {{ ds }}"}},
                "cannot hash the templated branch 'proceed'",
                id="templated-description",
            ),
            pytest.param(
                {"reuse_decisions": True, "branches": {**BRANCHES, "proceed": ["continue"]}},
                "text branch ids and descriptions",
                id="unhashable-description",
            ),
        ],
    )
    def test_a_clear_error_naming_the_task(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=r"^route: ") as caught:
            build(**kwargs)
        assert message in str(caught.value)

    def test_a_dag_file_with_a_bad_setting_is_an_import_error(self, tmp_path: Path) -> None:
        from airflow.dag_processing.dagbag import DagBag

        (tmp_path / "bad_gate.py").write_text(
            "import pendulum\n"
            "from airflow.sdk import DAG\n"
            "from airflow_agent_provider.operators import RemediationBranchOperator\n"
            "with DAG('bad_gate', schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz='UTC')):\n"
            "    RemediationBranchOperator(task_id='route', validation=None, branches={'a': 'x'},\n"
            "        on_pass='a', fallback='a', min_confidence=7)\n"
        )
        bag = DagBag(dag_folder=str(tmp_path))
        assert "route: min_confidence must be within 0..1, got 7" in "".join(bag.import_errors.values())

    def test_good_settings_build(self) -> None:
        op = build(min_confidence=0, reuse_decisions=True, reuse_for=timedelta(hours=1))
        assert (op.min_confidence, op.reuse_decisions, op.reuse_for) == (0.0, True, timedelta(hours=1))


# ---------------------------------------------------------------------------------------------- the gate


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestConfidenceGate:
    def test_an_answer_below_the_gate_takes_the_fallback_and_says_low_confidence(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("quarantine_rows", 0.55))
        dag_run = run_dag("claude_route_gate", conf=conf())
        assert routed_to(dag_run) == ["escalate"]
        decision = decision_of(dag_run)
        assert (decision.fallback_used, decision.low_confidence, decision.proposed_route) == (
            True,
            0.55,
            "quarantine_rows",
        )
        assert (decision.fallback_reason or "").startswith("low_confidence: Claude's confidence 0.55 is below")

    def test_an_answer_at_or_above_the_gate_is_followed(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("quarantine_rows", 0.7))
        dag_run = run_dag("claude_route_gate", conf=conf())
        assert routed_to(dag_run) == ["quarantine_rows"]
        assert decision_of(dag_run).low_confidence is None

    def test_with_approval_a_person_decides_without_the_low_answer_preselected(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("quarantine_rows", 0.4))
        with Responder("claude_route_gate_approval", answer="remediate_schema") as person:
            dag_run = run_dag("claude_route_gate_approval", conf=conf())
        assert person.seen["defaults"] == [] and "Low confidence" in person.seen["body"]
        assert routed_to(dag_run) == ["remediate_schema"]
        decision = decision_of(dag_run)
        assert (decision.approved_by, decision.proposed_route, decision.low_confidence) == (
            "oncall-ana",
            "quarantine_rows",
            0.4,
        )


# ---------------------------------------------------------------------------------------------- memory


@pytest.mark.airflow
@pytest.mark.usefixtures("clean")
class TestDecisionMemory:
    def test_three_dates_with_the_same_failure_make_one_model_call(self, claude_conn: FakeClaude) -> None:
        claude_conn.set_default(answer("quarantine_rows", 0.8))
        runs = [
            run_dag("claude_route_memory", day, conf(failing_validation(bad=10 * i)))
            for i, day in enumerate(DATES[:3], 1)
        ]
        assert model_calls(claude_conn) == 1
        assert [routed_to(r) for r in runs] == [["quarantine_rows"]] * 3
        first, *later = [decision_of(r) for r in runs]
        assert (first.reused_from, first.usage.model_calls, first.run_id) == (None, 1, runs[0].run_id)
        for decision in later:
            assert decision.reused_from == runs[0].run_id and decision.usage.model_calls == 0
            assert decision.reuse_reason and f"run {runs[0].run_id}" in decision.reuse_reason
            assert decision.signature == first.signature == failure_signature([failing_validation()], DAG_BRANCHES)

    def test_a_new_kind_of_failure_asks_again(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("quarantine_rows"), times=1).add(answer("escalate"), times=1)
        run_dag("claude_route_memory", DATES[0], conf())
        second = run_dag("claude_route_memory", DATES[1], conf(new_kind()))
        assert model_calls(claude_conn) == 2 and routed_to(second) == ["escalate"]
        assert decision_of(second).reused_from is None

    def test_changed_branch_descriptions_ask_again(
        self, claude_conn: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        claude_conn.add(answer("quarantine_rows"), times=1).add(answer("proceed"), times=1)
        run_dag("claude_route_memory", DATES[0], conf())
        monkeypatch.setenv("ROUTING_TEST_PROCEED", "Cosmetic issues only: continue.")
        second = run_dag("claude_route_memory", DATES[1], conf())
        assert model_calls(claude_conn) == 2 and routed_to(second) == ["proceed"]
        assert "Cosmetic issues only" in claude_conn.messages_requests[1].json["messages"][0]["content"]

    def test_an_expired_entry_asks_again(self, claude_conn: FakeClaude) -> None:
        import time

        claude_conn.set_default(answer("quarantine_rows"))
        run_dag("claude_route_memory_brief", DATES[0], conf())
        assert decision_of(run_dag("claude_route_memory_brief", DATES[1], conf())).reused_from is not None
        time.sleep(2.5)  # reuse_for is 2 s
        third = run_dag("claude_route_memory_brief", DATES[2], conf())
        assert model_calls(claude_conn) == 2 and decision_of(third).reused_from is None

    def test_a_fallback_is_not_remembered(self, claude_conn: FakeClaude) -> None:
        knows = threading.Event()
        claude_conn.set_default(Reply.callable(lambda _: answer("quarantine_rows") if knows.is_set() else PROSE))
        first = run_dag("claude_route_memory", DATES[0], conf())
        assert decision_of(first).fallback_used
        knows.set()
        second = run_dag("claude_route_memory", DATES[1], conf())
        assert routed_to(second) == ["quarantine_rows"] and decision_of(second).reused_from is None

    def test_a_deleted_decision_xcom_is_forgotten(self, claude_conn: FakeClaude) -> None:
        claude_conn.set_default(answer("quarantine_rows"))
        run_dag("claude_route_memory", DATES[0], conf())
        forget_xcom_only("claude_route_memory")
        run_dag("claude_route_memory", DATES[1], conf())
        assert model_calls(claude_conn) == 2

    @pytest.mark.slow
    @pytest.mark.timeout(900)
    def test_parallel_runs_may_both_ask_and_never_follow_a_half_made_decision(
        self, claude_conn: FakeClaude, tmp_path: Path
    ) -> None:
        """Two runs in two processes at once (as a backfill with max_active_runs >= 2 runs them): FakeClaude
        holds each answer until both asked, so neither can have seen the other's decision."""
        both_asking = threading.Barrier(2, timeout=240)

        def held_answer(body: Any) -> Reply:
            both_asking.wait()
            return answer("quarantine_rows")

        claude_conn.set_default(Reply.callable(held_answer))
        run_dag("claude_route_memory", "2026-10-31")  # a passing run first: the DAG is in the database
        procs = [run_in_process(day, tmp_path) for day in DATES[:2]]
        try:
            wait_until(lambda: not any(p.alive() for p in procs), 600, "both runs to finish")
        finally:
            assert stop_all(procs) == []
        runs = [finished_run("claude_route_memory", day) for day in DATES[:2]]
        assert [r.state for r in runs] == ["success", "success"], [p.tail() for p in procs]
        assert model_calls(claude_conn) == 2
        for dag_run in runs:
            decision = decision_of(dag_run)
            assert (decision.route, decision.reused_from, decision.usage.model_calls) == ("quarantine_rows", None, 1)
            assert routed_to(dag_run) == ["quarantine_rows"]
        later = run_dag("claude_route_memory", DATES[2], conf())
        newest = max(runs, key=lambda r: decision_of(r).decided_at or 0)
        assert model_calls(claude_conn) == 2 and decision_of(later).reused_from == newest.run_id


CHILD = """
import json, sys
from tests.support.dags import run_dag
run_dag("claude_route_memory", sys.argv[1], conf=json.loads(sys.argv[2]))
"""


def run_in_process(day: str, log_dir: Path) -> Proc:
    import os
    import sys

    argv = [sys.executable, "-c", CHILD, day, json.dumps(conf())]
    return Proc(f"run-{day}", argv, os.environ, log_dir)


def finished_run(dag_id: str, day: str) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == pendulum.parse(day))
        dag_run = session.scalars(query).one()
        session.expunge(dag_run)
        return dag_run


def forget_xcom_only(dag_id: str) -> None:
    """The documented way to forget: delete the task's ``decision`` XComs (runs stay)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(
            delete(XComModel).where(
                XComModel.dag_id == dag_id, XComModel.task_id == "route", XComModel.key == "decision"
            )
        )


@pytest.mark.airflow
@pytest.mark.usefixtures("clean")
class TestApprovalMemory:
    def test_a_persons_override_is_reused_as_approved_with_nobody_asked_again(self, claude_conn: FakeClaude) -> None:
        claude_conn.add(answer("quarantine_rows"))
        with Responder("claude_route_memory_approval", answer="remediate_schema"):
            first = run_dag("claude_route_memory_approval", DATES[0], conf())
        assert routed_to(first) == ["remediate_schema"]
        with Responder("claude_route_memory_approval", answer=None) as nobody:  # would time the approval out
            runs = [run_dag("claude_route_memory_approval", day, conf()) for day in DATES[1:3]]
        assert nobody.seen == {} and model_calls(claude_conn) == 1
        for dag_run in runs:
            decision = decision_of(dag_run)
            assert routed_to(dag_run) == ["remediate_schema"]
            assert (decision.approved_by, decision.reused_from) == ("oncall-ana", first.run_id)

    def test_a_remembered_claude_decision_is_proposed_to_a_person_without_a_model_call(
        self, claude_conn: FakeClaude, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        claude_conn.add(answer("quarantine_rows"))
        first = run_dag("claude_route_memory", DATES[0], conf())  # no approval yet: Claude decides
        monkeypatch.setenv("ROUTING_TEST_APPROVAL", "1")
        with Responder("claude_route_memory", answer="escalate") as person:
            second = run_dag("claude_route_memory", DATES[1], conf())
        assert model_calls(claude_conn) == 1 and person.seen["defaults"] == ["quarantine_rows"]
        assert f"memory (run {first.run_id}, no model call)" in person.seen["body"]
        decision = decision_of(second)
        assert (decision.route, decision.approved_by, decision.reused_from) == ("escalate", "oncall-ana", None)
        assert (decision.reuse_reason or "").startswith("proposed from memory (")
        with Responder("claude_route_memory", answer=None) as nobody:
            third = run_dag("claude_route_memory", DATES[2], conf())
        assert nobody.seen == {} and model_calls(claude_conn) == 1
        assert (decision_of(third).route, decision_of(third).reused_from) == ("escalate", second.run_id)
