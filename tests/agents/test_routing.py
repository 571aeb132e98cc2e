"""choose_route and diagnose against FakeClaude: a closed choice, quoted data, bounded input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from airflow_agent_provider.agents.calls import CallPolicy
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.diagnosis import diagnose
from airflow_agent_provider.agents.models import SMALL_MODEL, STRONG_MODEL
from airflow_agent_provider.agents.routing import choose_route
from airflow_agent_provider.exceptions import ModelCallError
from airflow_agent_provider.testing import FakeClaude, Reply
from tests.agents.support import INJECTION, KEY, SECRET_DSN, failing_validation, user_messages

BRANCHES = {
    "remediate_schema": "columns renamed or mistyped: fix the schema",
    "quarantine_rows": "a few bad rows: quarantine them",
    "escalate": "anything else: a person looks",
}
FAST = CallPolicy(backoff_s=0.02, deadline_s=20)


def route(client: Any, validation: Any = None, **kwargs: Any) -> Any:
    validations = [validation or failing_validation()]
    return choose_route(Claude.of(client, policy=FAST, **kwargs), validations=validations, branches=BRANCHES)


def answer(route_id: str, confidence: float = 0.8) -> Reply:
    return Reply.json({"route": route_id, "rationale": "because", "confidence": confidence})


class TestChooseRoute:
    def test_follows_the_scripted_route_and_records_the_decision(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("quarantine_rows", 0.7))
        decision = route(client)
        assert (decision.route, decision.confidence, decision.model) == ("quarantine_rows", 0.7, STRONG_MODEL)
        assert decision.options == ["escalate", "quarantine_rows", "remediate_schema"]
        assert decision.usage.model_calls == 1 and decision.usage.cost_usd > 0
        assert not decision.fallback_used

    def test_an_unscripted_answer_says_in_the_record_that_no_one_decided(self, fake: FakeClaude, client: Any) -> None:
        decision = route(client)  # no rule: FakeClaude's default answer
        assert decision.route == "escalate"  # the first option, alphabetically: not a judgment
        assert decision.rationale.startswith("FakeClaude default answer: no script rule matched")
        assert fake.messages_requests[0].default_answer and fake.messages_requests[0].rule is None

    def test_a_data_block_match_ignores_the_system_prompt(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("remediate_schema"), match={"data_contains": "missing_column"})  # the system names it
        fake.add(answer("quarantine_rows"), match={"data_contains": "schema_mismatch"})
        decision = route(client)
        assert decision.route == "quarantine_rows", user_messages(fake.messages_requests[0])
        assert fake.messages_requests[0].rule == 2

    def test_offers_exactly_the_sorted_branches_as_a_closed_enum(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("escalate"))
        route(client)
        body = fake.messages_requests[0].json
        schema = body["output_config"]["format"]["schema"]
        assert schema["title"] == "RouteDecision"
        assert schema["properties"]["route"]["enum"] == sorted(BRANCHES)
        listed = re.findall(r'^- "(\w+)":', user_messages(fake.messages_requests[0]), re.M)
        assert listed == sorted(BRANCHES)

    def test_an_answer_outside_the_set_is_never_returned(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("load"))
        with pytest.raises(ModelCallError) as info:
            route(client)
        assert info.value.reason == "off_contract"
        assert len(fake.messages_requests) == 3

    def test_an_answer_outside_the_set_is_repaired_to_one_inside(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("drop_table"), times=1)
        fake.add(answer("escalate"))
        assert route(client).route == "escalate"

    def test_instructions_in_rows_stay_inside_the_data_block(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("load"))  # a model that obeyed the rows: the contract still holds
        with pytest.raises(ModelCallError) as info:
            route(client, failing_validation(sample=[INJECTION] * 5))
        assert info.value.reason == "off_contract"
        prompt = fake.messages_requests[0].json["messages"][0]["content"]
        inside = prompt.split("<data>")[1].split("</data>")[0]
        outside = prompt.split("<data>")[0] + prompt.split("</data>")[-1]
        assert prompt.count("<data>") == 1 and prompt.count("</data>") == 1
        assert "ignore previous instructions" in inside and "ignore previous" not in outside

    @pytest.mark.parametrize("bad", [10, 1_000_000], ids=["10-failing-rows", "1M-failing-rows"])
    def test_input_tokens_stay_bounded_whatever_fails(self, fake: FakeClaude, client: Any, bad: int) -> None:
        fake.add(answer("escalate"))
        validation = failing_validation(rows=2_000_000, bad=bad, issues=200, columns=400, sample=["z" * 3000] * 5)
        usage = route(client, validation).usage
        total_input = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        assert total_input < 3000

    def test_the_system_prompt_is_cached_and_no_secret_is_sent(self, fake: FakeClaude, client: Any) -> None:
        fake.set_default(answer("escalate"))
        first, second = route(client), route(client)
        assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens > 0
        sent = json.dumps([r.json for r in fake.messages_requests])
        for secret in (KEY, SECRET_DSN, "hunter2", "warehouse.internal", "/var/lib/airflow"):
            assert secret not in sent

    def test_the_model_can_be_chosen(self, fake: FakeClaude, client: Any) -> None:
        fake.add(answer("escalate"))
        assert route(client, model="claude-sonnet-5-5").model == "claude-sonnet-5-5"
        assert fake.messages_requests[0].json["model"] == "claude-sonnet-5-5"


class TestDiagnose:
    def test_a_small_model_reads_the_failure(self, fake: FakeClaude, client: Any) -> None:
        reply = {"summary": "amount is text", "likely_cause": "upstream change", "recommendation": "cast it"}
        fake.add(Reply.json({**reply, "severity": "high"}), match={"schema_title": "Diagnosis"})
        diagnosis, usage = diagnose(Claude.of(client, policy=FAST), failing_validation())
        assert diagnosis.recommendation == "cast it" and diagnosis.severity == "high"
        assert usage.model_calls == 1
        assert fake.messages_requests[0].json["model"] == SMALL_MODEL

    def test_an_unusable_answer_is_a_model_call_error(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.refusal())
        with pytest.raises(ModelCallError) as info:
            diagnose(Claude.of(client, policy=FAST), failing_validation())
        assert info.value.reason == "refusal"
