"""Wire-level pieces of the fake Messages API: scripted replies, faults, the request log, and body rendering.

Everything here mirrors what ``anthropic`` SDK 2.x sends and expects (API version ``2026-10-21``):
success bodies are ``Message`` objects, error bodies are
``{"type": "error", "error": {"type", "message", "details"?}, "request_id"}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_agent_provider.testing._schema_instance import schema_instance

Body = dict[str, Any]
Headers = list[tuple[str, str]]

DEFAULT_MARK = "FakeClaude default answer: no script rule matched this request"
"""What every free-text field of an auto answer holds (a rationale, a summary), so a decision record
built from it says plainly that no one decided."""
AUTO_TEXT = f"This is an automatic reply from FakeClaude ({DEFAULT_MARK})."
_RATE_LIMITS = {"requests": 50, "tokens": 100_000, "input-tokens": 80_000, "output-tokens": 20_000}


@dataclass(frozen=True)
class Reply:
    """A successful (HTTP 200) assistant message to send back."""

    kind: str
    blocks: tuple[Body, ...] = ()
    stop_reason: str = "end_turn"
    stop_details: Body | None = None
    fn: Callable[[Body], Reply | Fault] | None = field(default=None, compare=False)

    @classmethod
    def json(cls, obj: Any) -> Reply:
        """A ``text`` block holding ``json.dumps(obj)`` — what structured outputs return."""
        return cls("json", (_text_block(json.dumps(obj)),))

    @classmethod
    def text(cls, text: str) -> Reply:
        return cls("text", (_text_block(text),))

    @classmethod
    def tool_use(cls, name: str, input: Body, *, id: str | None = None) -> Reply:
        block: Body = {"type": "tool_use", "name": name, "input": dict(input)}
        if id is not None:
            block["id"] = id
        return cls("tool_use", (block,), stop_reason="tool_use")

    @classmethod
    def refusal(cls, explanation: str = "I can't help with that.", *, category: str | None = None) -> Reply:
        details = {"type": "refusal", "category": category, "explanation": explanation}
        return cls("refusal", (_text_block(explanation),), stop_reason="refusal", stop_details=details)

    @classmethod
    def max_tokens(cls, partial_text: str) -> Reply:
        """Output cut off by the token budget (``stop_reason: max_tokens``), e.g. truncated JSON."""
        return cls("max_tokens", (_text_block(partial_text),), stop_reason="max_tokens")

    @classmethod
    def callable(cls, fn: Callable[[Body], Reply | Fault]) -> Reply:
        """Decide per request: ``fn(request_body)`` returns the Reply (or Fault) to send."""
        return cls("callable", fn=fn)

    @classmethod
    def auto(cls) -> Reply:
        """The schema-driven automatic answer (the default default)."""
        return cls("auto")


@dataclass(frozen=True)
class Fault:
    """An HTTP error (or a delay) to inject instead of a normal reply."""

    kind: str
    status: int = 500
    error_type: str = "api_error"
    message: str = "Internal server error"
    details: Body | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    should_retry: bool | None = None
    rate_limit_headers: bool = False
    html: str | None = None
    delay: float = 0.0
    then: Reply | Fault | None = None

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0, retry_after_ms: float | None = None) -> Fault:
        msg = "Number of requests has exceeded your rate limit."
        fault = cls("rate_limited", 429, "rate_limit_error", msg, retry_after=retry_after, should_retry=True)
        return dataclasses.replace(fault, retry_after_ms=retry_after_ms, rate_limit_headers=True)

    @classmethod
    def spend_limit(cls) -> Fault:
        msg = "Your organization has reached its enforced spend limit."
        details = {"error_code": "enforced_spend_limit_reached"}
        return cls("spend_limit", 429, "rate_limit_error", msg, details, should_retry=False)

    @classmethod
    def overloaded(cls, retry_after_ms: float | None = None) -> Fault:
        return cls("overloaded", 529, "overloaded_error", "Overloaded", retry_after_ms=retry_after_ms)

    @classmethod
    def server_error(cls, status: int = 500, retry_after_ms: float | None = None) -> Fault:
        error_type = "timeout_error" if status == 504 else "api_error"
        html = f"<html><head><title>{status} Bad Gateway</title></head><body>bad gateway</body></html>"
        html_or_none = html if status == 502 else None
        return cls("server_error", status, error_type, retry_after_ms=retry_after_ms, html=html_or_none)

    @classmethod
    def bad_request(cls, message: str = "Invalid request") -> Fault:
        return cls("bad_request", 400, "invalid_request_error", message)

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("unauthorized", 401, "authentication_error", "invalid x-api-key")

    @classmethod
    def slow(cls, seconds: float, then: Reply | Fault | None = None) -> Fault:
        """Sleep ``seconds`` (``FakeClaude.stop()`` interrupts), then answer ``then`` (None = the default)."""
        return cls("slow", 200, delay=seconds, then=then)


@dataclass
class RecordedRequest:
    """One request as the fake saw it; credentials in ``headers`` are redacted to ``***``."""

    path: str
    method: str
    headers: dict[str, str]
    json: Any
    received_at: float
    response_status: int | None = None
    reply_kind: str | None = None
    rule: int | None = None
    """The number (1, 2, ... in the order added) of the script rule that answered a messages request."""
    default_answer: bool = False
    """No rule matched: the fake's default answered (``reply_kind`` ``"auto"`` unless ``set_default`` changed it)."""

    @property
    def retry_count(self) -> int | None:
        """The SDK's ``x-stainless-retry-count`` (0 for the first attempt), if sent."""
        value = self.headers.get("x-stainless-retry-count")
        return int(value) if value is not None and value.isdigit() else None


@dataclass
class WireResponse:
    status: int
    payload: bytes
    headers: Headers
    kind: str

    @classmethod
    def of_json(cls, status: int, obj: Any, kind: str, headers: Headers | None = None) -> WireResponse:
        hdrs = [("content-type", "application/json"), *(headers or [])]
        return cls(status, json.dumps(obj).encode(), hdrs, kind)


def error_response(status: int, error_type: str, message: str, request_id: str, kind: str) -> WireResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    return WireResponse.of_json(status, body, kind)


def fault_response(fault: Fault, request_id: str) -> WireResponse:
    headers = _fault_headers(fault)
    if fault.html is not None:
        headers.insert(0, ("content-type", "text/html"))
        return WireResponse(fault.status, fault.html.encode(), headers, fault.kind)
    error: Body = {"type": fault.error_type, "message": fault.message}
    if fault.details:
        error["details"] = dict(fault.details)
    body = {"type": "error", "error": error, "request_id": request_id}
    return WireResponse.of_json(fault.status, body, fault.kind, headers)


def _fault_headers(fault: Fault) -> Headers:
    headers: Headers = []
    if fault.retry_after is not None:
        headers.append(("retry-after", _number(fault.retry_after)))
    if fault.retry_after_ms is not None:
        headers.append(("retry-after-ms", _number(fault.retry_after_ms)))
    if fault.should_retry is not None:
        headers.append(("x-should-retry", "true" if fault.should_retry else "false"))
    if fault.rate_limit_headers:
        headers.extend(_rate_limit_headers(fault.retry_after or 0.0))
    return headers


def _rate_limit_headers(retry_after: float) -> Headers:
    reset = (datetime.now(timezone.utc) + timedelta(seconds=retry_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers: Headers = []
    for name, limit in _RATE_LIMITS.items():
        remaining = 0 if name == "requests" else limit
        prefix = f"anthropic-ratelimit-{name}"
        headers += [(f"{prefix}-limit", str(limit)), (f"{prefix}-remaining", str(remaining))]
        headers.append((f"{prefix}-reset", reset))
    return headers


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text_block(text: str) -> Body:
    return {"type": "text", "text": text}


# --------------------------------------------------------------------------- request inspection


def output_schema(body: Body) -> Body | None:
    schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def forced_tool_schema(body: Body) -> tuple[str, Body] | None:
    choice = body.get("tool_choice") or {}
    if choice.get("type") != "tool":
        return None
    for tool in body.get("tools") or []:
        if tool.get("name") == choice.get("name"):
            return str(tool["name"]), dict(tool.get("input_schema") or {})
    return None


def user_text(body: Body) -> str:
    parts = [_content_text(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "user"]
    return "\n".join(parts)


def system_text(body: Body) -> str:
    return _content_text(body.get("system"))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text") if b.get("type") == "text" else _content_text(b.get("content")) for b in content]
    return "\n".join(t for t in texts if t)


def data_blocks(body: Body) -> list[str]:
    """The ``<data>`` ... ``</data>`` blocks of the user messages (the pipeline's evidence, JSON), without the tags."""
    return [match.strip() for match in _DATA_BLOCK.findall(user_text(body))]


_DATA_BLOCK = re.compile(r"<data>(.*?)</data>", re.DOTALL)


def auto_reply(body: Body) -> Reply:
    """Answer derived from the request alone: schema instance, forced tool call, or a short text; every
    free-text field holds :data:`DEFAULT_MARK`."""
    schema = output_schema(body)
    if schema is not None:
        return dataclasses.replace(Reply.json(schema_instance(schema, DEFAULT_MARK)), kind="auto")
    forced = forced_tool_schema(body)
    if forced is not None:
        return dataclasses.replace(Reply.tool_use(forced[0], schema_instance(forced[1], DEFAULT_MARK)), kind="auto")
    return dataclasses.replace(Reply.text(AUTO_TEXT), kind="auto")


# --------------------------------------------------------------------------- usage and prompt caching


@dataclass(frozen=True)
class PromptTokens:
    """Token estimate (ceil(chars / 4)) of a request, split at the last ``cache_control`` breakpoint."""

    uncached: int
    cacheable: int
    cache_key: str | None
    ttl: str = "5m"

    @property
    def total(self) -> int:
        return self.uncached + self.cacheable


def prompt_tokens(body: Body) -> PromptTokens:
    segments, last, ttl = _segments(body)
    sizes = [len(json.dumps(s, sort_keys=True)) for s in segments]
    if last < 0:
        return PromptTokens(_tokens(sum(sizes)), 0, None)
    prefix = json.dumps([body.get("model"), segments[: last + 1]], sort_keys=True)
    key = hashlib.sha256(prefix.encode()).hexdigest()
    return PromptTokens(_tokens(sum(sizes[last + 1 :])), _tokens(sum(sizes[: last + 1])), key, ttl)


def _segments(body: Body) -> tuple[list[Any], int, str]:
    """Prompt pieces in cache order plus the schema, the last ``cache_control`` index, and its TTL."""
    pieces = _pieces(body)
    top_level = body.get("cache_control")
    if isinstance(top_level, dict) and pieces:  # the API auto-marks the last cacheable block
        pieces[-1] = (pieces[-1][0], top_level)
    marked = [i for i, (_, marker) in enumerate(pieces) if marker]
    last = marked[-1] if marked else -1
    ttl = str(pieces[last][1].get("ttl", "5m")) if marked else "5m"
    schema = output_schema(body)
    return [piece for piece, _ in pieces] + ([schema] if schema else []), last, ttl


def _pieces(body: Body) -> list[tuple[Any, Any]]:
    """(piece, its cache_control) in the API's cache order: tools, then system, then message blocks."""
    system = body.get("system")
    blocks = [*(body.get("tools") or []), *(system if isinstance(system, list) else [system] * bool(system))]
    pieces = [(block, _marker(block)) for block in blocks]
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else [content]:
            pieces.append(({"role": message.get("role"), "content": block}, _marker(block)))
    return pieces


def _marker(piece: Any) -> Any:
    return piece.get("cache_control") if isinstance(piece, dict) else None


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def usage_body(tokens: PromptTokens, cache_hit: bool, output_tokens: int) -> Body:
    written = 0 if cache_hit else tokens.cacheable
    return {
        "input_tokens": tokens.uncached,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": tokens.cacheable if cache_hit else 0,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written if tokens.ttl != "1h" else 0,
            "ephemeral_1h_input_tokens": written if tokens.ttl == "1h" else 0,
        },
    }


def message_body(reply: Reply, request: Body, message_id: str, usage: Body) -> Body:
    body: Body = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.get("model"),
        "content": [_with_tool_id(block, message_id, i) for i, block in enumerate(reply.blocks)],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if reply.stop_details is not None:
        body["stop_details"] = dict(reply.stop_details)
    return body


def output_tokens(reply: Reply) -> int:
    chars = sum(len(b["text"] if b["type"] == "text" else json.dumps(b.get("input"))) for b in reply.blocks)
    return max(_tokens(chars), 1)


def _with_tool_id(block: Body, message_id: str, index: int) -> Body:
    if block.get("type") != "tool_use" or "id" in block:
        return dict(block)
    return {"type": "tool_use", "id": f"toolu_{message_id.removeprefix('msg_')}_{index}", **block}


def now() -> float:
    return time.time()
