"""FakeClaude exercised through the real ``anthropic`` SDK over loopback HTTP (strict response validation)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from airflow_agent_provider.testing import FakeClaude, Fault, Reply
from airflow_agent_provider.testing._schema_instance import schema_instance

MODEL = "claude-sonnet-4-6"
KEY = "fake-test-key"
USER = [{"role": "user", "content": "Incident: 5xx spike after deploy 42"}]


class Severity(str, Enum):
    LOW = "low"
    HIGH = "high"


class Evidence(BaseModel):
    source: str
    lines: list[int] = Field(min_length=1)
    score: float = Field(ge=0.5, le=1.0)


class RouteDecision(BaseModel):
    route: Literal["retry_load", "page_oncall"]
    severity: Severity
    evidence: Evidence
    attempts: int = Field(ge=1, le=3)
    note: str | None = None


@pytest.fixture
def fake() -> Iterator[FakeClaude]:
    with FakeClaude(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeClaude) -> Any:
    """A real SDK client on the fake: no retries unless a test asks (``client.with_options``)."""
    import anthropic

    return anthropic.Anthropic(
        api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0, _strict_response_validation=True
    )


def route_schema() -> dict[str, Any]:
    import anthropic

    return anthropic.transform_schema(RouteDecision)


def ask(client: Any, **params: Any) -> Any:
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": USER, **params}
    return client.messages.create(**request)


def structured(schema: dict[str, Any]) -> dict[str, Any]:
    return {"format": {"type": "json_schema", "schema": schema}}


def raw_post(fake: FakeClaude, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(fake.url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class TestStructuredOutput:
    def test_scripted_json_reply_is_parsed_by_the_sdk(self, fake: FakeClaude, client: Any) -> None:
        evidence = {"source": "api", "lines": [3], "score": 0.9}
        decision = {"route": "page_oncall", "severity": "high", "attempts": 1, "evidence": evidence}
        fake.add(Reply.json(decision))
        message = ask(client, output_config=structured(route_schema()))
        assert message.stop_reason == "end_turn"
        assert RouteDecision.model_validate_json(message.content[0].text).route == "page_oncall"
        assert message.id == "msg_fake_1"
        assert message.model == MODEL
        assert message._request_id == "req_fake_000001"

    def test_auto_answer_is_valid_against_enum_and_nested_defs(self, fake: FakeClaude, client: Any) -> None:
        schema = RouteDecision.model_json_schema()
        assert "$defs" in schema
        message = ask(client, output_config=structured(schema))
        decision = RouteDecision.model_validate_json(message.content[0].text)
        assert decision.route == "retry_load"
        assert decision.severity is Severity.LOW
        assert len(decision.evidence.lines) == 1
        assert 0.5 <= decision.evidence.score <= 1.0
        assert fake.requests[0].reply_kind == "auto"

    def test_sdk_parse_helper_gets_a_typed_auto_answer(self, fake: FakeClaude, client: Any) -> None:
        params = {"model": MODEL, "max_tokens": 256, "messages": USER}
        parsed = client.messages.parse(output_format=RouteDecision, **params)
        assert isinstance(parsed.parsed_output, RouteDecision)
        assert fake.messages_requests[0].json["output_config"]["format"]["schema"]["title"] == "RouteDecision"

    def test_auto_answer_marks_every_free_text_field_as_the_default(self, fake: FakeClaude, client: Any) -> None:
        schema = {
            "type": "object",
            "title": "RouteDecision",
            "properties": {"route": {"enum": ["a", "b"]}, "rationale": {"type": "string"}},
            "required": ["route", "rationale"],
            "additionalProperties": False,
        }
        answer = json.loads(ask(client, output_config=structured(schema)).content[0].text)
        assert answer == {"route": "a", "rationale": "FakeClaude default answer: no script rule matched this request"}
        assert (fake.requests[0].default_answer, fake.requests[0].rule) == (True, None)

    def test_log_file_holds_one_line_per_request(self, tmp_path: Path, client: Any) -> None:
        import anthropic

        log = tmp_path / "log.jsonl"
        with FakeClaude(api_key=KEY, log_path=log) as fake:
            fake.add(Reply.text("scripted"), match={"data_contains": "orders"}, times=1)
            sdk = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0)
            data = [{"role": "user", "content": 'Check this.\n<data>\n{"dataset":"orders"}\n</data>'}]
            assert ask(sdk, messages=data).content[0].text == "scripted"
            ask(sdk, messages=data, system="orders")  # rule used up; the system prompt does not count
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(line["rule"], line["default_answer"]) for line in lines] == [(1, False), (None, True)]
        assert lines[0]["path"] == "/v1/messages" and lines[0]["status"] == 200 and lines[0]["model"] == MODEL

    def test_data_contains_reads_only_the_data_block(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("data"), match={"data_contains": "deploy"})
        assert "automatic reply" in ask(client, system="deploy").content[0].text  # no <data> block at all
        block = [{"role": "user", "content": 'look\n<data>\n{"note":"deploy 42"}\n</data>'}]
        assert ask(client, messages=block).content[0].text == "data"

    def test_auto_answer_without_schema_is_prose(self, fake: FakeClaude, client: Any) -> None:
        message = ask(client)
        assert message.content[0].type == "text"
        assert "FakeClaude" in message.content[0].text

    def test_tool_use_reply_carries_an_id_and_input(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.tool_use("choose_route", {"route": "retry_load"}))
        message = ask(client)
        assert message.stop_reason == "tool_use"
        assert message.content[0].input == {"route": "retry_load"}
        assert message.content[0].id.startswith("toolu_")


class TestAuth:
    def test_bearer_key_is_accepted(self, fake: FakeClaude, client: Any) -> None:
        ask(client)
        assert fake.requests[0].response_status == 200
        assert fake.requests[0].headers["authorization"] == "***"

    def test_wrong_key_raises_authentication_error(self, fake: FakeClaude, client: Any) -> None:
        import anthropic

        with pytest.raises(anthropic.AuthenticationError) as caught:
            ask(client.with_options(api_key="not-the-key"))
        assert caught.value.type == "authentication_error"
        assert caught.value.status_code == 401
        assert "not-the-key" not in json.dumps(caught.value.body)

    def test_legacy_x_api_key_header_is_accepted(self, fake: FakeClaude) -> None:
        body = {"model": MODEL, "max_tokens": 16, "messages": USER}
        status, answer = raw_post(fake, "/v1/messages", body, {"x-api-key": KEY})
        assert status == 200
        assert answer["type"] == "message"

    def test_keys_never_appear_in_log_or_repr(self, fake: FakeClaude, client: Any) -> None:
        ask(client)
        legacy = {"x-api-key": KEY}
        raw_post(fake, "/v1/messages", {"model": MODEL, "max_tokens": 1, "messages": USER}, legacy)
        assert fake.requests[0].headers["authorization"] == "***"
        assert fake.requests[1].headers["x-api-key"] == "***"
        assert KEY not in repr(fake)
        assert KEY not in repr(fake.requests)


class TestValidation:
    def test_temperature_is_rejected_with_bad_request(self, fake: FakeClaude, client: Any) -> None:
        import anthropic

        with pytest.raises(anthropic.BadRequestError) as caught:
            ask(client.with_options(max_retries=2), extra_body={"temperature": 0.0})
        assert "temperature" in caught.value.message
        assert caught.value.type == "invalid_request_error"
        assert len(fake.requests) == 1

    def test_missing_max_tokens_is_rejected(self, fake: FakeClaude) -> None:
        body = {"model": MODEL, "messages": USER}
        status, answer = raw_post(fake, "/v1/messages", body, {"x-api-key": KEY})
        assert status == 400
        assert answer["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
        assert answer["request_id"] == "req_fake_000001"

    def test_unknown_route_is_not_found(self, fake: FakeClaude) -> None:
        status, answer = raw_post(fake, "/v1/complete", {}, {"x-api-key": KEY})
        assert status == 404
        assert answer["error"]["type"] == "not_found_error"


class TestFaults:
    def test_overloaded_then_success_is_retried_by_the_sdk(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Fault.overloaded(retry_after_ms=1), times=1)
        fake.add(Reply.text("recovered"))
        message = ask(client.with_options(max_retries=2))
        assert message.content[0].text == "recovered"
        assert [r.response_status for r in fake.requests] == [529, 200]
        assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1"]

    def test_rate_limit_exposes_retry_after_headers(self, fake: FakeClaude, client: Any) -> None:
        import anthropic

        fake.add(Fault.rate_limited(retry_after=7))
        with pytest.raises(anthropic.RateLimitError) as caught:
            ask(client)
        headers = caught.value.response.headers
        assert headers["retry-after"] == "7"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert caught.value.request_id == "req_fake_000001"

    def test_spend_limit_is_not_retried(self, fake: FakeClaude, client: Any) -> None:
        import anthropic

        fake.add(Fault.spend_limit())
        with pytest.raises(anthropic.EnforcedSpendLimitReachedError) as caught:
            ask(client.with_options(max_retries=2))
        assert caught.value.error_code == "enforced_spend_limit_reached"
        assert len(fake.requests) == 1

    def test_bad_gateway_html_body_reaches_the_sdk_raw(self, fake: FakeClaude, client: Any) -> None:
        import anthropic

        fake.add(Fault.server_error(status=502, retry_after_ms=1))
        with pytest.raises(anthropic.InternalServerError) as caught:
            ask(client.with_options(max_retries=1))
        assert caught.value.status_code == 502
        assert "<html>" in caught.value.response.text
        assert len(fake.requests) == 2

    def test_slow_reply_times_out_and_stop_is_prompt(self) -> None:
        import anthropic

        with FakeClaude(api_key=KEY) as slow_fake:
            slow_fake.add(Fault.slow(30, then=Reply.text("too late")))
            client = anthropic.Anthropic(api_key=KEY, base_url=slow_fake.url, max_retries=0, timeout=0.3)
            with pytest.raises(anthropic.APITimeoutError):
                ask(client)
            started = time.monotonic()
            slow_fake.stop()
            assert time.monotonic() - started < 2.0
        assert slow_fake.requests[0].response_status is None


class TestStopReasons:
    def test_refusal_carries_stop_details(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.refusal(explanation="Not allowed."))
        message = ask(client)
        assert message.stop_reason == "refusal"
        assert message.stop_details is not None
        assert message.stop_details.explanation == "Not allowed."

    def test_max_tokens_returns_truncated_text(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.max_tokens('{"route": "retry_'))
        message = ask(client, output_config=structured(route_schema()))
        assert message.stop_reason == "max_tokens"
        assert message.content[0].text == '{"route": "retry_'


class TestRules:
    def test_times_consumes_a_rule_then_falls_through(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("first"), times=2)
        fake.set_default(Reply.text("fallback"))
        texts = [ask(client).content[0].text for _ in range(3)]
        assert texts == ["first", "first", "fallback"]

    def test_schema_title_matcher_picks_the_right_rule(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("other schema"), match={"schema_title": "SomethingElse"})
        wanted = {"schema_title": "RouteDecision", "model": MODEL}
        fake.add(Reply.json({"route": "page_oncall"}), match=wanted)
        message = ask(client, output_config=structured(route_schema()))
        assert json.loads(message.content[0].text) == {"route": "page_oncall"}

    def test_substring_matcher_reads_user_and_system_text(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("from system"), match="You route incidents")
        fake.add(Reply.text("from user"), match="deploy 42")
        assert ask(client).content[0].text == "from user"
        assert ask(client, system="You route incidents.").content[0].text == "from system"

    def test_property_and_callable_matchers(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("has route"), match={"schema_has_property": "route"})
        fake.add(Reply.callable(lambda body: Reply.text(str(body["max_tokens"]))), match=lambda b: True)
        assert ask(client, output_config=structured(route_schema())).content[0].text == "has route"
        assert ask(client, max_tokens=77).content[0].text == "77"

    def test_times_is_exact_under_concurrent_requests(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("scarce"), times=5)
        fake.set_default(Reply.text("plenty"))
        with ThreadPoolExecutor(max_workers=8) as pool:
            texts = list(pool.map(lambda _: ask(client).content[0].text, range(20)))
        assert sorted(texts) == ["plenty"] * 15 + ["scarce"] * 5
        assert len(fake.messages_requests) == 20

    def test_unknown_match_key_is_refused(self, fake: FakeClaude) -> None:
        with pytest.raises(ValueError, match="unknown match keys"):
            fake.add(Reply.text("x"), match={"schema_name": "RouteDecision"})

    def test_reset_clears_rules_and_log(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("scripted"))
        ask(client)
        fake.reset()
        assert fake.requests == []
        assert ask(client).content[0].text != "scripted"


class TestUsage:
    def test_cache_write_then_read_for_identical_prefix(self, fake: FakeClaude, client: Any) -> None:
        system = [{"type": "text", "text": "Runbook. " * 400, "cache_control": {"type": "ephemeral"}}]
        first, second = (ask(client, system=system).usage for _ in range(2))
        assert first.cache_creation_input_tokens > 900
        assert first.cache_read_input_tokens == 0
        assert second.cache_creation_input_tokens == 0
        assert second.cache_read_input_tokens == first.cache_creation_input_tokens
        assert second.input_tokens == first.input_tokens > 0

    def test_cached_tool_prefix_is_read_for_a_new_question(self, fake: FakeClaude, client: Any) -> None:
        tool = {"name": "lookup", "description": "d" * 2000, "input_schema": {"type": "object"}}
        tools = [{**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        first = ask(client, tools=tools).usage
        second = ask(client, tools=tools, messages=[{"role": "user", "content": "another question"}]).usage
        assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens > 500
        assert second.cache_read_input_tokens == first.cache_creation_input_tokens
        assert second.input_tokens != first.input_tokens

    def test_uncached_usage_is_about_a_quarter_of_the_characters(self, fake: FakeClaude, client: Any) -> None:
        fake.add(Reply.text("x" * 400))
        usage = ask(client, messages=[{"role": "user", "content": "y" * 4000}]).usage
        assert 1000 <= usage.input_tokens <= 1020
        assert usage.output_tokens == 100
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0

    def test_count_tokens_returns_input_tokens(self, fake: FakeClaude, client: Any) -> None:
        counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "z" * 800}])
        assert 200 <= counted.input_tokens <= 215
        assert fake.messages_requests == []
        assert fake.requests[0].reply_kind == "count_tokens"


NODE = {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}
SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "exclusiveMinimum": 5, "maximum": 10},
    {"type": "number", "minimum": -3.5, "maximum": -1},
    {"type": "string", "minLength": 8, "maxLength": 10},
    {"type": "string", "format": "date-time"},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "uniqueItems": True},
    {"type": ["string", "null"]},
    {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"required": ["b"]}]},
    {"$defs": {"Node": {**NODE, "required": ["child"]}}, "$ref": "#/$defs/Node"},
    {"type": "integer", "description": "Attempts\n\n{maximum: 3, minimum: 2}"},
]


class TestSchemaInstance:
    @pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: json.dumps(s)[:40])
    def test_instance_is_valid_against_the_schema(self, schema: dict[str, Any]) -> None:
        import jsonschema

        instance = schema_instance(schema)
        jsonschema.validate(instance, schema)
        if "description" in schema:
            assert instance == 2


class TestCli:
    def test_cli_serves_a_script_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        import anthropic

        script = tmp_path / "rules.json"
        reply = {"kind": "json", "value": {"route": "x"}}
        rule = {"match": {"contains": "deploy"}, "times": 1, "reply": reply}
        script.write_text(json.dumps([rule]))
        port_file = tmp_path / "port"
        command = [sys.executable, "-m", "airflow_agent_provider.testing.fake_claude", "--port", "0"]
        log = tmp_path / "requests.jsonl"
        command += ["--port-file", str(port_file), "--script", str(script), "--api-key", KEY, "--log", str(log)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = _wait_for_port(port_file, process)
            client = anthropic.Anthropic(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0)
            assert json.loads(ask(client).content[0].text) == {"route": "x"}
            assert "automatic reply" in ask(client).content[0].text
        finally:
            os.kill(process.pid, signal.SIGTERM)
            returncode = process.wait(timeout=5)
        assert returncode == 0, process.stderr.read() if process.stderr else ""
        scripted, unscripted = [json.loads(line) for line in log.read_text().splitlines()]
        assert (scripted["rule"], scripted["default_answer"], scripted["reply_kind"]) == (1, False, "json")
        assert (unscripted["rule"], unscripted["default_answer"], unscripted["reply_kind"]) == (None, True, "auto")
        assert "default answer" in unscripted["note"] and unscripted["body"]["messages"] == USER
        assert KEY not in log.read_text()

    def test_from_script_builds_slow_replies_and_faults(self) -> None:
        import anthropic

        slow = {"kind": "slow", "seconds": 0.2, "then": {"kind": "text", "text": "late but fine"}}
        limited = {"kind": "rate_limited", "retry_after": 2}
        rules: list[dict[str, Any]] = [
            {"match": None, "times": 1, "reply": slow},
            {"match": "deploy", "reply": limited},
        ]
        with FakeClaude.from_script(rules, api_key=KEY) as fake:
            client = anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0, timeout=5.0)
            started = time.monotonic()
            assert ask(client).content[0].text == "late but fine"
            assert time.monotonic() - started >= 0.2
            with pytest.raises(anthropic.RateLimitError) as caught:
                ask(client)
        assert caught.value.response.headers["retry-after"] == "2"


def _wait_for_port(port_file: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        assert process.poll() is None, "fake_claude CLI exited early"
        time.sleep(0.05)
    raise AssertionError("fake_claude CLI never wrote its port file")


def test_the_documented_script_loads() -> None:
    """docs/claude.md's example script is one FakeClaude accepts, with the reply kinds the page lists."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "claude.md").read_text()
    section = page.split("### FakeClaude outside pytest", 1)[1]
    script = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    fake = FakeClaude.from_script(script)
    assert len(fake._rules) == 3
    from airflow_agent_provider.testing.fake_claude import _SPEC_FACTORIES

    documented = set(re.findall(r"^  \| `(\w+)` \| .* \| .* \|$", section, re.M)) - {"model", "contains"}
    assert {"json", "slow", *_SPEC_FACTORIES} <= documented
