"""Loopback alert receivers run as their own processes: a webhook endpoint and an SMTP sink.

    python tests/process/receivers.py webhook --port 18181 --out hooks.jsonl
    python tests/process/receivers.py smtp --port 18125 --out mails.jsonl

Each received POST or message is appended to ``--out`` as one JSON line. Both bind 127.0.0.1 only
and run until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def _append(out: Path, record: dict[str, Any]) -> None:
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def serve_webhook(port: int, out: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            _append(out, {"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body.decode()})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((HOST, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


def serve_smtp(port: int, out: Path) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
            parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
            _append(
                out,
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "subject": str(message["Subject"]),
                    "body": "\n".join(parts),
                },
            )
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=HOST, port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["webhook", "smtp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.touch()
    (serve_webhook if args.kind == "webhook" else serve_smtp)(args.port, args.out)


if __name__ == "__main__":
    main()
