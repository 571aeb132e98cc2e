"""Decision memory (agents/memory.py): the failure signature and which earlier decision is followed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_agent_provider.agents.memory import (
    describe_failure,
    failure_signature,
    recall,
    rememberable,
    reused,
)
from airflow_agent_provider.contracts import Issue, RouteDecision, StageResult, Usage
from tests.agents.support import failing_validation

BRANCHES = {"escalate": "a person looks", "proceed": "continue", "quarantine_rows": "quarantine bad rows"}
NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def record(run_id: str, route: str = "quarantine_rows", *, age: timedelta = DAY, **update: Any) -> dict[str, Any]:
    """A stored decision record (JSON, as XCom holds it) made ``age`` before NOW."""
    decision = RouteDecision(
        route=route,
        rationale=f"decided in {run_id}",
        confidence=0.9,
        options=sorted(BRANCHES),
        model="claude-sonnet-4-6",
        usage=Usage(model_calls=1, input_tokens=900, cost_usd=0.004),
        run_id=run_id,
        signature=SIG,
        decided_at=NOW - age,
    )
    return decision.model_copy(update=update).model_dump(mode="json")


SIG = failure_signature([failing_validation()], BRANCHES)


def find(records: list[Any], *, signature: str = SIG, reuse_for: timedelta = 30 * DAY) -> RouteDecision | None:
    found = recall(records, signature=signature, options=sorted(BRANCHES), now=NOW, reuse_for=reuse_for)
    return None if found is None else found.decision


class TestSignature:
    def test_counts_samples_and_messages_do_not_change_it(self) -> None:
        other = failing_validation(rows=50_000, bad=4_321, sample=["x", "y"])
        assert failure_signature([other], BRANCHES) == SIG

    def test_the_order_of_issues_and_of_branches_does_not_change_it(self) -> None:
        result = failing_validation(issues=3)
        flipped = result.model_copy(update={"issues": list(reversed(result.issues))})
        reordered = dict(reversed(list(BRANCHES.items())))
        assert failure_signature([flipped], reordered) == failure_signature([result], BRANCHES)

    def test_a_new_kind_of_failure_changes_it(self) -> None:
        result = failing_validation()
        new_type = result.model_copy(update={"issues": [result.issues[0].model_copy(update={"type": "new_kind"})]})
        new_column = result.model_copy(update={"issues": [result.issues[0].model_copy(update={"column": "user_id"})]})
        extra = failing_validation(issues=2)
        signatures = {failure_signature([r], BRANCHES) for r in (result, new_type, new_column, extra)}
        assert len(signatures) == 4

    def test_a_changed_branch_description_or_set_changes_it(self) -> None:
        assert failure_signature([failing_validation()], {**BRANCHES, "proceed": "go on"}) != SIG
        assert failure_signature([failing_validation()], {**BRANCHES, "remediate": "fix"}) != SIG

    def test_passing_results_are_not_part_of_it(self) -> None:
        passing = StageResult(stage="validate", status="pass", issues=[Issue(type="info", column="x")])
        assert failure_signature([failing_validation(), passing], BRANCHES) == SIG

    def test_a_failure_without_issues_still_has_one_and_reads_in_words(self) -> None:
        bare = StageResult(stage="validate", status="fail")
        assert failure_signature([bare], BRANCHES) not in (SIG, failure_signature([], BRANCHES))
        assert describe_failure([failing_validation()]) == "schema_mismatch on events.amount"


class TestRecall:
    def test_the_newest_matching_decision_wins(self) -> None:
        records = [record("r1", age=3 * DAY), record("r3", "escalate", age=DAY), record("r2", "proceed", age=2 * DAY)]
        assert (found := find(records)) is not None and (found.run_id, found.route) == ("r3", "escalate")

    def test_another_signature_or_an_expired_entry_is_not_followed(self) -> None:
        assert find([record("r1")], signature="0" * 64) is None
        assert find([record("r1", age=31 * DAY)]) is None
        assert find([record("r1", age=31 * DAY)], reuse_for=32 * DAY) is not None

    def test_only_whole_decisions_made_in_their_own_run_are_remembered(self) -> None:
        for update in (
            {"fallback_used": True, "fallback_reason": "rate_limited: x", "route": "escalate"},
            {"low_confidence": 0.4},
            {"awaiting_approval": True},
            {"reused_from": "r0"},
            {"model": None},  # the rule "all checks passed", not a decision
            {"signature": None},
        ):
            assert not rememberable(RouteDecision.model_validate(record("r1", **update))), update
        junk: list[Any] = [None, "text", {"route": 3}, {"unknown_field": 1}]
        assert find(junk) is None

    def test_a_persons_decision_is_remembered_even_below_the_gate(self) -> None:
        approved = record("r1", approved_by="oncall-ana", low_confidence=0.4, proposed_route="proceed")
        assert (found := find([approved])) is not None and found.approved_by == "oncall-ana"

    def test_an_override_replaces_the_remembered_decision(self) -> None:
        claude = record("r1", "quarantine_rows", age=2 * DAY)
        person = record("r2", "escalate", age=DAY, approved_by="oncall-ana", proposed_route="quarantine_rows")
        assert (found := find([claude, person])) is not None and (found.route, found.run_id) == ("escalate", "r2")

    def test_a_route_no_longer_offered_is_not_followed(self) -> None:
        found = recall([record("r1")], signature=SIG, options=["escalate"], now=NOW, reuse_for=30 * DAY)
        assert found is None

    def test_the_current_runs_own_record_is_ignored(self) -> None:
        found = recall(
            [record("r1")], signature=SIG, options=sorted(BRANCHES), now=NOW, reuse_for=DAY * 30, current_run_id="r1"
        )
        assert found is None

    def test_the_reused_record_says_where_from_and_why_and_costs_nothing(self) -> None:
        found = recall([record("r1")], signature=SIG, options=sorted(BRANCHES), now=NOW, reuse_for=30 * DAY)
        assert found is not None
        decision = reused(found, run_id="r9", failure="schema_mismatch on events.amount")
        assert (decision.route, decision.run_id, decision.reused_from) == ("quarantine_rows", "r9", "r1")
        assert decision.usage == Usage() and decision.decided_at == NOW - DAY  # the age stays the original's
        assert decision.reuse_reason is not None
        assert "run r1" in decision.reuse_reason and SIG[:12] in decision.reuse_reason
        assert "within reuse_for 30 days" in decision.reuse_reason and "events.amount" in decision.reuse_reason
        assert not rememberable(decision)  # a copy: only the original decides what is remembered
