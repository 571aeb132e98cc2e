"""A scripted JSON API on loopback (a stdlib ``ThreadingHTTPServer``) for HTTP sources: routes, replies, calls."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from airflow_agent_provider.engines.extract import HttpEndpoint


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None


@dataclass
class Call:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class Api:
    """Routes path -> handler(query, call number) -> Reply; records every call."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[dict[str, str], int], Reply]] = {}
        self.calls: list[Call] = []
        self.base_url = ""
        self._lock = threading.Lock()

    def route(self, path: str, handler: Callable[[dict[str, str], int], Reply] | Reply) -> None:
        self.routes[path] = handler if callable(handler) else (lambda _q, _n, reply=handler: reply)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def endpoint(self, headers: dict[str, str] | None = None, auth: Any = None) -> Callable[[str], HttpEndpoint]:
        """A session per source with the connection's ``headers`` and ``auth``, as HttpHook builds one."""

        def session_for(_conn_id: str) -> HttpEndpoint:
            session = requests.Session()
            session.headers.update(headers or {})
            session.auth = auth
            return HttpEndpoint(base_url=self.base_url, session=session)

        return session_for

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts_ = urlsplit(request.path)
        query = dict(parse_qsl(parts_.query))
        with self._lock:
            self.calls.append(Call(parts_.path, query, dict(request.headers.items())))
            number = len(self.calls_to(parts_.path))
        handler = self.routes.get(parts_.path)
        reply = handler(query, number) if handler else Reply({"error": "no such route"}, status=404)
        time.sleep(reply.delay)
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        request.send_response(reply.status)
        request.send_header("Content-Type", "application/json" if reply.raw is None else "text/html")
        request.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            request.send_header(key, value)
        request.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            request.wfile.write(payload)


@pytest.fixture
def api() -> Iterator[Api]:
    scripted = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scripted.handle(self)

        def do_POST(self) -> None:
            scripted.handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scripted.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield scripted
    server.shutdown()
    server.server_close()
