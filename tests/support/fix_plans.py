"""The fix plans the remediation tests script FakeClaude with: payments whose ``uid`` should be
``user_id`` and whose text ``amount`` should be a float (one value, ``n/a``, cannot be)."""

from __future__ import annotations

from typing import Any

from airflow_agent_provider.testing import Reply

RENAME = {"action": "rename_column", "column": "uid", "to": "user_id"}
QUARANTINE = {
    "action": "quarantine_rows",
    "rule": {"column": "amount", "op": "not_castable", "to_type": "float"},
    "target": "payment_rejects",
}
CAST = {"action": "cast_column", "column": "amount", "to_type": "float"}
USELESS = {"action": "fill_default", "column": "amount", "value": "0"}


def plan(*actions: dict[str, Any]) -> Reply:
    """Claude's answer: these actions, in order."""
    return Reply.json({"actions": list(actions), "rationale": "make it match the schema"})
