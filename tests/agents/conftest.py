"""Fixtures of the Claude-layer tests (FakeClaude and a real SDK client on it)."""

from tests.agents.support import claude_conn, client, fake

__all__ = ["claude_conn", "client", "fake"]
