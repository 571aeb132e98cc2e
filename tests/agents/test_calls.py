"""call_structured through the real anthropic SDK against FakeClaude: wire shape, retries, contract, budget."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from airflow_agent_provider.agents.calls import Budget, CallPolicy, call_structured
from airflow_agent_provider.agents.pricing import PRICES
from airflow_agent_provider.contracts import Usage
from airflow_agent_provider.exceptions import BudgetExhausted, ModelCallError
from airflow_agent_provider.testing import FakeClaude, Fault, Reply
from tests.agents.support import KEY

MODEL = "claude-sonnet-4-6"
SYSTEM = "You grade rows. " * 200
DATA_MARKER = "ROW-VALUE-7f3a"
GOOD = {"label": "good", "score": 0.9}
FAST = CallPolicy(backoff_s=0.02, max_backoff_s=0.1, deadline_s=20, timeout_s=5)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Literal["good", "bad"]
    score: float = Field(ge=0, le=1)


def ask(client: Any, policy: CallPolicy = FAST, **kwargs: Any) -> Any:
    user = f"Grade this row: <data>{DATA_MARKER}</data>"
    return call_structured(client, model=MODEL, system=SYSTEM, user=user, output=Verdict, policy=policy, **kwargs)


def failure(client: Any, **kwargs: Any) -> tuple[ModelCallError, float]:
    started = time.monotonic()
    with pytest.raises(ModelCallError) as info:
        ask(client, **kwargs)
    return info.value, time.monotonic() - started


class TestRequestShape:
    def test_asks_for_json_schema_output_with_a_cached_system_block_and_nothing_else(
        self, fake: FakeClaude, client: Any
    ) -> None:
        fake.add(Reply.json(GOOD))
        ask(client)
        body = fake.messages_requests[0].json
        assert body["output_config"]["format"]["type"] == "json_schema"
        schema = body["output_config"]["format"]["schema"]
        assert schema["title"] == "Verdict"
        assert schema["properties"]["label"]["enum"] == ["good", "bad"]
        assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
        assert not {"temperature", "top_p", "top_k", "tool_choice", "tools"} & set(body)
        assert fake.messages_requests[0].headers["authorization"] == "***"
        assert KEY not in json.dumps(body)

    def test_answer_carries_the_value_the_usage_and_the_priced_cost(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.json(GOOD))
        answer = ask(client)
        assert answer.value == Verdict(label="good", score=0.9)
        assert (answer.model, answer.attempts, answer.repairs) == (MODEL, 1, 0)
        usage, price = answer.usage, PRICES[MODEL]
        assert usage.model_calls == 1 and usage.input_tokens > 0 and usage.cache_creation_input_tokens > 0
        expected = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + usage.cache_creation_input_tokens * price.cache_write_5m
        ) / 1e6
        assert usage.cost_usd == pytest.approx(expected)

    def test_the_second_call_reads_the_system_prompt_from_the_cache(self, fake: FakeClaude, client: Any) -> None:
        fake.set_default(Reply.json(GOOD))
        first, second = ask(client).usage, ask(client).usage
        assert second.cache_read_input_tokens == first.cache_creation_input_tokens > 0
        assert second.cache_creation_input_tokens == 0
        assert second.cost_usd < first.cost_usd


class TestTransientFailures:
    def test_an_overload_storm_gives_up_after_max_attempts_in_bounded_time(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.overloaded())
        err, elapsed = failure(client)
        assert err.reason == "overloaded"
        assert len(fake.messages_requests) == FAST.max_attempts
        assert elapsed < 3

    def test_server_errors_then_an_answer_succeed_within_one_decision(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.server_error(500), times=1)
        fake.add(Fault.server_error(502), times=1)
        fake.add(Reply.json(GOOD))
        answer = ask(client)
        assert answer.attempts == 3 and answer.usage.model_calls == 1

    def test_a_retry_after_beyond_the_deadline_gives_up_at_once(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.rate_limited(retry_after=3600))
        err, elapsed = failure(client)
        assert err.reason == "rate_limited" and "3600" in str(err)
        assert len(fake.messages_requests) == 1
        assert elapsed < 2

    def test_a_short_retry_after_is_honoured(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.rate_limited(retry_after=1, retry_after_ms=400), times=1)
        fake.add(Reply.json(GOOD))
        started = time.monotonic()
        answer = ask(client)
        assert answer.attempts == 2
        assert 0.35 <= time.monotonic() - started < 3

    def test_a_long_retry_after_within_the_deadline_is_capped(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.rate_limited(retry_after=30), times=1)
        fake.add(Reply.json(GOOD))
        started = time.monotonic()
        answer = ask(client, policy=CallPolicy(max_retry_after_s=0.3, deadline_s=60))
        assert answer.attempts == 2
        assert 0.25 <= time.monotonic() - started < 3

    def test_a_slow_server_times_out_within_the_deadline(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.slow(30))
        err, elapsed = failure(client, policy=CallPolicy(timeout_s=0.4, deadline_s=1.5, backoff_s=0.05))
        assert err.reason == "timeout"
        assert elapsed < 3

    def test_an_unreachable_server_is_unavailable_in_bounded_time(self) -> None:
        import anthropic

        client = anthropic.Anthropic(api_key=KEY, base_url="http://127.0.0.1:9", max_retries=0)
        err, elapsed = failure(client)
        assert err.reason == "unavailable" and elapsed < 3


class TestPermanentFailures:
    @pytest.mark.parametrize(
        ("fault", "reason"),
        [
            pytest.param(Fault.spend_limit(), "rate_limited", id="spend-limit"),
            pytest.param(Fault.bad_request("max_tokens: too large"), "bad_request", id="bad-request"),
            pytest.param(Fault.unauthorized(), "auth", id="unauthorized"),
        ],
    )
    def test_is_not_retried(self, fake: FakeClaude, client: Any, fault: Fault, reason: str) -> None:
        fake.add(fault)
        err, _ = failure(client)
        assert err.reason == reason
        assert len(fake.messages_requests) == 1

    def test_a_wrong_key_is_an_auth_error(self, fake: FakeClaude) -> None:
        import anthropic

        client = anthropic.Anthropic(api_key="sk-ant-wrong", base_url=fake.url, max_retries=0)
        err, _ = failure(client)
        assert err.reason == "auth"

    def test_a_client_without_credentials_is_no_credentials(self, fake: FakeClaude) -> None:
        import anthropic

        client = anthropic.Anthropic(base_url=fake.url, max_retries=0)
        err, _ = failure(client)
        assert err.reason == "no_credentials"
        assert fake.messages_requests == []

    @pytest.mark.parametrize(
        ("reply", "reason"),
        [
            pytest.param(Reply.refusal("not with this data"), "refusal", id="refusal"),
            pytest.param(Reply.max_tokens('{"label": "go'), "max_tokens", id="max-tokens"),
        ],
    )
    def test_a_stop_reason_other_than_end_turn_is_an_error_not_a_parse_attempt(
        self, fake: FakeClaude, client: Any, reply: Reply, reason: str
    ) -> None:
        fake.add(reply)
        err, _ = failure(client)
        assert err.reason == reason
        assert len(fake.messages_requests) == 1
        assert err.usage is not None and err.usage.model_calls == 1


class TestContract:
    def test_prose_is_repaired_twice_then_off_contract(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("The row looks good to me."))
        err, _ = failure(client)
        assert err.reason == "off_contract"
        assert len(fake.messages_requests) == 3
        assert err.usage is not None and err.usage.model_calls == 3

    def test_the_repair_message_names_the_errors_not_the_data(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.json({"label": "meh", "score": 2}), times=1)
        fake.add(Reply.json(GOOD))
        answer = ask(client)
        assert answer.repairs == 1 and answer.value.label == "good"
        messages = fake.messages_requests[1].json["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        repair = messages[-1]["content"]
        assert "label" in repair and "score" in repair
        assert DATA_MARKER not in repair and "meh" not in repair

    def test_a_failed_check_is_off_contract_and_repaired(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.json({"label": "bad", "score": 0.1}), times=1)
        fake.add(Reply.json(GOOD))

        def only_good(value: Verdict) -> None:
            if value.label != "good":
                raise ValueError("only good rows are expected here")

        answer = ask(client, check=only_good)
        assert answer.repairs == 1 and answer.value.label == "good"


class TestBudget:
    def test_a_spent_call_budget_makes_no_request(self, fake: FakeClaude, client: Any) -> None:
        with pytest.raises(BudgetExhausted) as info:
            ask(client, budget=Budget(max_model_calls=0))
        assert info.value.reason == "budget_exhausted"
        assert fake.messages_requests == []

    def test_a_spent_cost_budget_makes_no_request(self, fake: FakeClaude, client: Any) -> None:
        with pytest.raises(BudgetExhausted):
            ask(client, budget=Budget(max_cost_usd=0.01, spent=Usage(model_calls=3, cost_usd=0.01)))
        assert fake.messages_requests == []

    def test_a_budget_too_small_for_the_next_input_makes_no_request(self, fake: FakeClaude, client: Any) -> None:
        with pytest.raises(BudgetExhausted):
            ask(client, budget=Budget(max_cost_usd=1e-6))
        assert fake.messages_requests == []

    def test_the_budget_stops_repairs_and_the_error_carries_what_was_spent(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("prose"))
        budget = Budget(max_model_calls=1)
        with pytest.raises(BudgetExhausted) as info:
            ask(client, budget=budget)
        assert len(fake.messages_requests) == 1
        assert info.value.usage is not None and info.value.usage.model_calls == 1
        assert budget.spent.model_calls == 1 and budget.spent.cost_usd > 0


class TestCallPolicy:
    @pytest.mark.parametrize(
        "kwargs",
        [{"max_attempts": 0}, {"repair_attempts": -1}, {"deadline_s": 0}, {"max_tokens": 0}],
        ids=["attempts", "repairs", "deadline", "max-tokens"],
    )
    def test_rejects_nonsense(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            CallPolicy(**kwargs)
