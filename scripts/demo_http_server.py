"""The demo's users API: a stdlib HTTP server on 127.0.0.1 serving a JSON list page by page.

``GET /users?page=1&per_page=100`` answers ``{"data": [...], "page": 1, "per_page": 100, "total": N}``;
a page past the end has an empty ``data``. ``GET /health`` answers ``{"ok": true}``. The chosen port
is written to ``--port-file`` once the server listens (port 0 picks a free one).

    python scripts/demo_http_server.py --data var/sample/users.json --port-file var/users_api.port
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

MAX_PAGE_SIZE = 1000


def page_of(records: list[Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """The requested page of ``records`` (1-based ``page``, ``per_page`` capped at 1000)."""
    page = max(1, int(query.get("page", ["1"])[0]))
    per_page = min(MAX_PAGE_SIZE, max(1, int(query.get("per_page", ["100"])[0])))
    chunk = records[(page - 1) * per_page : page * per_page]
    return {"data": chunk, "page": page, "per_page": per_page, "total": len(records)}


def make_handler(records: list[Any], path: str = "/users") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/health":
                self._send(200, {"ok": True})
            elif url.path.rstrip("/") == path:
                try:
                    self._send(200, page_of(records, parse_qs(url.query)))
                except ValueError as err:
                    self._send(400, {"error": f"bad query: {err}"})
            else:
                self._send(404, {"error": f"no route {url.path}"})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints its own summary
            return

    return Handler


def serve(records: list[Any], port: int = 0) -> ThreadingHTTPServer:
    """Start the server in a daemon thread and return it (``server.server_port`` is the port)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(records))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a JSON file holding a list of records")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    records = json.loads(args.data.read_text(encoding="utf-8"))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(records))
    args.port_file.parent.mkdir(parents=True, exist_ok=True)
    args.port_file.write_text(str(server.server_port), encoding="utf-8")
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
