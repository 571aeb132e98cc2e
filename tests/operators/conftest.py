"""Real sources for the operator tests: a SQLite file, CSV files, a loopback JSON API, connections.

DAG runs (``dag.test()``) execute tasks in this process, so connections set here as
``AIRFLOW_CONN_*`` environment variables reach the operators as they would on a worker.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from scripts.demo_http_server import page_of
from tests.support.operators import Sources

CUSTOMERS = [
    {"customer_id": 1, "name": "Ada"},
    {"customer_id": 2, "name": "Grace"},
    {"customer_id": 3, "name": "Linus"},
]
ORDERS = [
    (1, 1, 10.0, "2026-11-09"),
    (2, 2, 20.5, "2026-11-09"),
    (3, 1, 4.5, "2026-11-09"),
    (4, 3, 7.0, "2026-11-09"),
    (5, 2, 99.0, "2026-11-08"),
]
REGIONS_CSV = "customer_id,region\n1,north\n2,south\n3,north\n"


class _ApiHandler(BaseHTTPRequestHandler):
    """``/users``: CUSTOMERS page by page under ``data``; ``/broken``: HTTP 500."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/users":
            self._send(200, page_of(CUSTOMERS, parse_qs(url.query)))
        elif url.path == "/broken":
            self._send(500, {"error": "the database behind this API is down"})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="session")
def api_port() -> Iterator[int]:
    """A loopback JSON API for HTTP sources; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture
def sources(tmp_path: Path) -> Sources:
    found = Sources(
        orders_db=tmp_path / "orders.db",
        regions_csv=tmp_path / "regions.csv",
        good_csv=tmp_path / "good.csv",
        malformed_csv=tmp_path / "malformed.csv",
        first_csv=tmp_path / "first.csv",
        second_csv=tmp_path / "second.csv",
        warehouse_db=tmp_path / "warehouse.db",
    )
    con = sqlite3.connect(found.orders_db)
    con.execute("CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, amount REAL, day TEXT)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ORDERS)
    con.commit()
    con.close()
    found.regions_csv.write_text(REGIONS_CSV)
    found.good_csv.write_text("id,label\n1,a\n2,b\n3,c\n")
    found.malformed_csv.write_text("id,label\n1,a\n2,b,unexpected,extra\n3,c\n")
    found.first_csv.write_text("id,value\n1,10\n2,20\n")
    found.second_csv.write_text("id,value\n1,5\n2,6\n3,7\n")
    return found


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch, sources: Sources, api_port: int) -> Sources:
    """The test DAGs' connections, pointing at this test's sources and warehouse."""
    monkeypatch.setenv("AIRFLOW_CONN_OP_SOURCE_DB", f"sqlite:///{sources.orders_db}")
    monkeypatch.setenv("AIRFLOW_CONN_OP_WAREHOUSE", f"sqlite:///{sources.warehouse_db}")
    monkeypatch.setenv(
        "AIRFLOW_CONN_OP_USERS_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": api_port})
    )
    monkeypatch.setenv("AIRFLOW_CONN_OP_UNREACHABLE_DB", "postgresql://postgres@127.0.0.1:1/nowhere")
    return sources
