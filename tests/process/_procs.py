"""Real processes for the process tests: started in their own process group, stopped by their pid.

Nothing here kills by name: a test stops exactly the groups it started, then checks they are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs: zombies (killed, not yet reaped) do not count.

    A group killed by a script that then exits leaves zombies until something reaps them, and
    ``killpg(pgid, 0)`` still succeeds on those; ``/proc`` tells a zombie from a live process.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: a recycled group id owned by someone else
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux: killpg is all we have
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """One command running in a new session (its own process group), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def group_alive(self) -> bool:
        return group_alive(self.pid)

    def stop(self, grace: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """Signal the whole group (SIGTERM), SIGKILL what is left after ``grace`` s; the leader's exit code."""
        self._signal_group(sig)
        deadline = time.monotonic() + grace
        while self.group_alive() and time.monotonic() < deadline:
            self.popen.poll()
            time.sleep(0.2)
        if self.group_alive():
            self._signal_group(signal.SIGKILL)
            wait_until(lambda: not self.group_alive() or self.popen.poll() is not None, 10, f"{self.name} to die")
        return self.popen.wait(timeout=10)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)


def stop_all(procs: Sequence[Proc]) -> list[str]:
    """Stop every process (last started first); the names of groups that are still alive afterwards."""
    for proc in reversed(procs):
        proc.stop()
    return [proc.name for proc in procs if proc.group_alive()]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Receivers:
    """The webhook endpoint and the SMTP sink of ``receivers.py`` as two processes, plus their connections."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.webhook_port, self.smtp_port = free_port(), free_port()
        self.hooks_file, self.mails_file = work / "hooks.jsonl", work / "mails.jsonl"
        script = str(ROOT / "tests" / "process" / "receivers.py")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs = [
            Proc(
                "webhook",
                [sys.executable, script, "webhook", "--port", str(self.webhook_port), "--out", str(self.hooks_file)],
                env,
                work,
            ),
            Proc(
                "smtp",
                [sys.executable, script, "smtp", "--port", str(self.smtp_port), "--out", str(self.mails_file)],
                env,
                work,
            ),
        ]
        wait_until(lambda: port_open(self.webhook_port) and port_open(self.smtp_port), 20, "the alert receivers")

    def connections(self, webhook_path: str = "/hooks/alerts") -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables for the webhook (an http connection) and the SMTP sink."""
        webhook = {"conn_type": "http", "host": f"http://{HOST}:{self.webhook_port}{webhook_path}"}
        smtp = {
            "conn_type": "smtp",
            "host": HOST,
            "port": self.smtp_port,
            "extra": {
                "disable_tls": True,
                "disable_ssl": True,
                "from_email": "airflow@example.com",
                "timeout": 10,
                "retry_limit": 0,
            },
        }
        return {"AIRFLOW_CONN_ALERTS_WEBHOOK": json.dumps(webhook), "AIRFLOW_CONN_ALERTS_SMTP": json.dumps(smtp)}

    def hooks(self) -> list[dict[str, Any]]:
        return read_jsonl(self.hooks_file)

    def mails(self) -> list[dict[str, Any]]:
        return read_jsonl(self.mails_file)

    def clear(self) -> None:
        for path in (self.hooks_file, self.mails_file):
            path.write_text("")

    def stop(self) -> list[str]:
        return stop_all(self.procs)
