"""FakeClaude: a loopback HTTP server speaking the Anthropic Messages API the way ``anthropic`` SDK 2.x does.

It answers ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` with scripted replies or faults,
checks auth like the real API (``Authorization: Bearer <key>`` or ``x-api-key``), rejects what API
version ``2026-10-21`` rejects (missing ``model``/``max_tokens``/``messages``; any ``temperature``,
``top_p`` or ``top_k``), reports realistic ``usage`` including prompt-cache writes and reads, and logs
every request (credentials redacted). Stdlib only; no network access beyond 127.0.0.1.

Direct use with the SDK::

    with FakeClaude() as fake:
        fake.add(Reply.json({"route": "retry"}), match={"schema_title": "RouteDecision"}, times=1)
        fake.add(Fault.overloaded(retry_after_ms=1), match="flaky step")
        client = anthropic.Anthropic(api_key="fake-key", base_url=fake.url)
        ...
        assert fake.messages_requests[0].json["model"] == "claude-sonnet-4-6"

Pointing an Airflow ``anthropic`` connection at it in your own DAG tests (``host`` is the base URL,
``password`` the API key, so no code change is needed in the operators under test)::

    @pytest.fixture
    def fake_claude(monkeypatch):
        with FakeClaude(api_key="fake-key") as fake:
            conn = {"conn_type": "anthropic", "host": fake.url, "password": "fake-key"}
            monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", json.dumps(conn))
            yield fake

    def test_dag_routes_on_claude_decision(fake_claude):
        fake_claude.add(Reply.json({"route": "page_oncall"}), match={"schema_title": "RouteDecision"})
        dag.test()
        assert fake_claude.messages_requests[-1].reply_kind == "json"

For a separate process (demos, ``airflow standalone``)::

    python -m airflow_agent_provider.testing.fake_claude --port 0 --port-file /tmp/port --script rules.json \
        --log /tmp/fake_claude.jsonl

A script is a JSON list of rules ``{"match": ..., "times": n, "reply": {"kind": ...}}`` (see
docs/claude.md, "FakeClaude outside pytest"); ``--log`` appends one JSON line per request.

When no rule matches, the fake sends its *default answer*, an *auto answer* unless ``set_default``
changed it: a minimal JSON instance of the request's ``output_config.format.schema`` (or a forced tool
call, or a short text) whose every free-text field reads ``FakeClaude default answer: no script rule
matched this request``, so a decision record built from it says so; its ``reply_kind`` is ``"auto"``
and the request log marks it ``"default_answer": true``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_agent_provider.testing._schema_instance import resolve_ref
from airflow_agent_provider.testing._wire import (
    Body,
    Fault,
    RecordedRequest,
    Reply,
    WireResponse,
    auto_reply,
    data_blocks,
    error_response,
    fault_response,
    message_body,
    now,
    output_schema,
    output_tokens,
    prompt_tokens,
    system_text,
    usage_body,
    user_text,
)

__all__ = ["FakeClaude", "Fault", "RecordedRequest", "Reply", "main"]

Item = Reply | Fault
Script = str | os.PathLike[str] | Sequence[Mapping[str, Any]]  # rule list, or a JSON file holding one
Traceback = TracebackType | None
Answer = WireResponse | None  # None: stopped mid-reply, drop the connection
Matcher = None | str | Mapping[str, Any] | Callable[[Body], bool]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
_SECRET_HEADERS = frozenset({"authorization", "x-api-key"})
_REJECTED_PARAMS = ("temperature", "top_p", "top_k")


@dataclass
class _Rule:
    item: Item
    matches: Callable[[Body], bool]
    remaining: int | None
    number: int = 0


class FakeClaude:
    """Scriptable fake of the Anthropic Messages API on a loopback port (see the module docstring)."""

    def __init__(
        self,
        api_key: str = "fake-key",
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """:param log_path: append one JSON line per request to this file (see :meth:`log_line`)."""
        self._api_key = api_key
        self._host, self._port = host, port
        self._log_path = Path(log_path) if log_path is not None else None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._rules: list[_Rule] = []
        self._default: Item = Reply.auto()
        self._log: list[RecordedRequest] = []
        self._cache: set[str] = set()
        self._counter = itertools.count(1)
        self._rule_numbers = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeClaude:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes any sleeping slow reply (its connection is closed without an answer)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=2)
        self._server = self._thread = None

    def __enter__(self) -> FakeClaude:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Traceback) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeClaude is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)`` or an Airflow connection's ``host``."""
        return f"http://{self._host}:{self.port}"

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<FakeClaude {where} rules={len(self._rules)} requests={len(self._log)}>"

    # ------------------------------------------------------------------ scripting

    def add(self, item: Item, *, match: Matcher = None, times: int | None = None) -> FakeClaude:
        """Add a rule; rules are tried in order, ``times`` uses then it is consumed (None = unlimited)."""
        if not isinstance(item, (Reply, Fault)):
            raise TypeError(f"expected Reply or Fault, got {type(item).__name__}")
        if times is not None and times < 1:
            raise ValueError("times must be a positive int or None")
        with self._lock:
            self._rules.append(_Rule(item, compile_matcher(match), times, next(self._rule_numbers)))
        return self

    def set_default(self, reply: Item) -> None:
        """Answer used when no rule matches (initially ``Reply.auto()``)."""
        with self._lock:
            self._default = reply

    def reset(self) -> None:
        """Forget rules, the request log, the prompt cache and the default (back to ``Reply.auto()``)."""
        with self._lock:
            self._init_state()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.split("?")[0] == MESSAGES_PATH]

    @classmethod
    def from_script(cls, script: Script, **kwargs: Any) -> FakeClaude:
        """A (not yet started) fake from a rule list or a JSON file holding one (see ``item_from_spec``)."""
        rules = json.loads(Path(script).read_text()) if isinstance(script, (str, os.PathLike)) else script
        fake = cls(**kwargs)
        for rule in rules:
            fake.add(item_from_spec(rule["reply"]), match=rule.get("match"), times=rule.get("times"))
        return fake

    # ------------------------------------------------------------------ serving (called from handler threads)

    def dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        """Answer one HTTP request; None means the fake was stopped mid-reply (drop the connection)."""
        record = RecordedRequest(path, method, _redact(headers), _parse_json(raw), now())
        with self._lock:
            self._log.append(record)
            number = next(self._counter)
        request_id = f"req_fake_{number:06d}"
        try:
            response = self._respond(record, headers, number, request_id)
        except Exception as exc:  # a bug in a callable matcher/reply: surface it as a 500, keep serving
            response = error_response(500, "api_error", f"FakeClaude error: {exc!r}", request_id, "error")
        if response is not None:
            response.headers.append(("request-id", request_id))
            with self._lock:
                record.response_status, record.reply_kind = response.status, response.kind
        self._write_log(record, request_id)
        return response

    @staticmethod
    def log_line(record: RecordedRequest, request_id: str) -> dict[str, Any]:
        """What ``--log`` writes for a request: when, what was asked, what answered it, and the body."""
        body = record.json if isinstance(record.json, dict) else {}
        schema = output_schema(body) or {}
        line: dict[str, Any] = {
            "at": dt.datetime.fromtimestamp(record.received_at, dt.timezone.utc).isoformat(),
            "request_id": request_id,
            "method": record.method,
            "path": record.path,
            "status": record.response_status,
            "reply_kind": record.reply_kind,
            "rule": record.rule,
            "default_answer": record.default_answer,
            "model": body.get("model"),
            "schema_title": schema.get("title"),
        }
        if record.default_answer:
            line["note"] = "no script rule matched: FakeClaude's default answer, not a decision"
        line["body"] = record.json
        return line

    def _write_log(self, record: RecordedRequest, request_id: str) -> None:
        if self._log_path is None:
            return
        text = json.dumps(self.log_line(record, request_id), default=str) + "\n"
        with self._lock, self._log_path.open("a", encoding="utf-8") as out:
            out.write(text)

    def _respond(self, record: RecordedRequest, headers: dict[str, str], n: int, rid: str) -> Answer:
        route = record.path.split("?")[0]
        if record.method != "POST" or route not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            message = f"Not found: {record.method} {route}"
            return error_response(404, "not_found_error", message, rid, "not_found")
        if not self._authorized(headers):
            return error_response(401, "authentication_error", "invalid x-api-key", rid, "unauthorized")
        body = record.json
        problem = validation_problem(body, count_only=route == COUNT_TOKENS_PATH)
        if problem is not None:
            return error_response(400, "invalid_request_error", problem, rid, "invalid_request")
        if route == COUNT_TOKENS_PATH:
            return WireResponse.of_json(200, {"input_tokens": prompt_tokens(body).total}, "count_tokens")
        item, rule = self._next_item(body)
        with self._lock:
            record.rule, record.default_answer = rule, rule is None
        return self._render(item, body, n, rid)

    def _authorized(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        token = bearer[7:] if bearer[:7].lower() == "bearer " else headers.get("x-api-key", "")
        return hmac.compare_digest(token.encode(), self._api_key.encode())

    def _next_item(self, body: Body) -> tuple[Item, int | None]:
        """The item that answers ``body`` and the number of its rule (None: the default)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(body):
                    self._consume(rule)
                    return rule.item, rule.number
            return self._default, None

    def _consume(self, rule: _Rule) -> None:
        if rule.remaining is None:
            return
        rule.remaining -= 1
        if rule.remaining == 0:
            self._rules.remove(rule)

    def _render(self, item: Item, body: Body, n: int, rid: str) -> Answer:
        if isinstance(item, Fault) and item.kind == "slow":
            if self._stopping.wait(item.delay):
                return None
            return self._render(item.then if item.then is not None else self._default, body, n, rid)
        if isinstance(item, Fault):
            return fault_response(item, rid)
        if item.kind == "callable" and item.fn is not None:
            return self._render(item.fn(body), body, n, rid)
        reply = auto_reply(body) if item.kind == "auto" else item
        tokens = prompt_tokens(body)
        usage = usage_body(tokens, self._cache_hit(tokens.cache_key), output_tokens(reply))
        return WireResponse.of_json(200, message_body(reply, body, f"msg_fake_{n}", usage), reply.kind)

    def _cache_hit(self, key: str | None) -> bool:
        """Was this cache prefix seen before? (Records it, so the next identical prefix is a read.)"""
        with self._lock:
            hit = key in self._cache
            if key is not None:
                self._cache.add(key)
        return hit


# ---------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeClaude

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.fake.dispatch(self.command, self.path, headers, raw)
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in [*response.headers, ("content-length", str(len(response.payload)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""


def _redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if k in _SECRET_HEADERS else v) for k, v in headers.items()}


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def validation_problem(body: Any, *, count_only: bool = False) -> str | None:
    """The ``invalid_request_error`` message the API would give for ``body``, or None if it is acceptable."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    for name in ("model", "messages") if count_only else ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    for name in _REJECTED_PARAMS:
        if name in body:
            return f"{name}: is not supported on anthropic-version 2026-10-21; remove it"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "messages: at least one message is required"
    return None


# ---------------------------------------------------------------------- matching


def compile_matcher(match: Matcher) -> Callable[[Body], bool]:
    """Turn a ``match`` argument (None, substring, dict of conditions or callable) into a predicate."""
    if match is None:
        return lambda body: True
    if isinstance(match, str):
        return lambda body: _contains(body, match)
    if isinstance(match, Mapping):
        unknown = set(match) - set(_CONDITIONS)
        if unknown:
            raise ValueError(f"unknown match keys {sorted(unknown)}; use {sorted(_CONDITIONS)}")
        conditions = dict(match)
        return lambda body: all(_CONDITIONS[key](body, value) for key, value in conditions.items())
    if callable(match):
        return match
    raise TypeError(f"match must be None, str, dict or callable, not {type(match).__name__}")


def _contains(body: Body, needle: Any) -> bool:
    return str(needle) in user_text(body) or str(needle) in system_text(body)


def _data_contains(body: Body, needle: Any) -> bool:
    """The needle in a ``<data>`` block of the user message: the pipeline's evidence, not the instructions.

    The block is JSON as sent: ``<`` and ``>`` inside it appear as ``\\u003c`` and ``\\u003e``.
    """
    return any(str(needle) in block for block in data_blocks(body))


def _schemas(body: Body) -> list[Body]:
    """Output schema and tool input schemas, each with a top-level ``$ref`` resolved."""
    found = [output_schema(body), *((t or {}).get("input_schema") for t in body.get("tools") or [])]
    return [resolve_ref(s, s) for s in found if isinstance(s, dict)]


_CONDITIONS: dict[str, Callable[[Body, Any], bool]] = {
    "model": lambda body, value: body.get("model") == value,
    "contains": _contains,
    "data_contains": _data_contains,
    "schema_title": lambda body, value: any(s.get("title") == value for s in _schemas(body)),
    "schema_has_property": lambda body, value: any(value in s.get("properties", {}) for s in _schemas(body)),
}


# ---------------------------------------------------------------------- script files and CLI

_SPEC_FACTORIES: dict[str, Callable[..., Item]] = {
    "text": Reply.text,
    "tool_use": Reply.tool_use,
    "refusal": Reply.refusal,
    "max_tokens": Reply.max_tokens,
    "auto": Reply.auto,
    "rate_limited": Fault.rate_limited,
    "spend_limit": Fault.spend_limit,
    "overloaded": Fault.overloaded,
    "server_error": Fault.server_error,
    "bad_request": Fault.bad_request,
    "unauthorized": Fault.unauthorized,
}


def item_from_spec(spec: Mapping[str, Any]) -> Item:
    """``{"kind": "json", "value": {...}}``, ``{"kind": "slow", "seconds": 2, "then": {...}}``, or
    ``{"kind": <factory name>, **factory kwargs}`` for the other Reply/Fault constructors."""
    args = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec.get("kind")
    if kind == "json":
        return Reply.json(args["value"] if "value" in args else args["obj"])
    if kind == "slow":
        then = args.get("then")
        return Fault.slow(float(args["seconds"]), then=item_from_spec(then) if then else None)
    if kind not in _SPEC_FACTORIES:
        raise ValueError(f"unknown reply kind {kind!r}; use json, slow or one of {sorted(_SPEC_FACTORIES)}")
    return _SPEC_FACTORIES[str(kind)](**args)


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(f"{port}\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Anthropic Messages API until SIGTERM/SIGINT.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--script", help="JSON file: a list of {match, times, reply} rules")
    parser.add_argument("--api-key", default=os.environ.get("FAKE_CLAUDE_API_KEY", "fake-key"))
    parser.add_argument("--log", help="append one JSON line per request to this file (what answered it, the body)")
    args = parser.parse_args(argv)
    options = {"api_key": args.api_key, "host": args.host, "port": args.port, "log_path": args.log}
    fake = FakeClaude.from_script(args.script, **options) if args.script else FakeClaude(**options)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with fake:
        if args.port_file:
            _write_port_file(args.port_file, fake.port)
        print(f"FakeClaude listening on {fake.url}", flush=True)
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
