"""Test helpers for code that talks to Claude: :class:`FakeClaude`, a loopback fake of the Messages API.

See :mod:`airflow_agent_provider.testing.fake_claude` for usage, including pointing an Airflow
``anthropic`` connection at the fake in DAG tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_agent_provider.testing._wire import Fault, RecordedRequest, Reply

if TYPE_CHECKING:
    from airflow_agent_provider.testing.fake_claude import FakeClaude

__all__ = ["FakeClaude", "Fault", "RecordedRequest", "Reply"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m airflow_agent_provider.testing.fake_claude` does not load it twice.
    if name == "FakeClaude":
        from airflow_agent_provider.testing.fake_claude import FakeClaude

        return FakeClaude
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
