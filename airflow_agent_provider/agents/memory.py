"""Decision memory: follow an earlier routing decision for the same failure without asking again.

A failure's *signature* is a hash of what failed (each failing check's dataset, column, rule and
issue type, never counts or samples) and of the routes on offer (the declared branch ids with their
descriptions). An earlier decision with the same signature, made within ``reuse_for``, is followed
with zero model calls; the newest such decision wins, so a person's override replaces what Claude
chose before. Pure functions over decision records: the operator reads the records (XCom of earlier
runs of the same DAG and task) and writes the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_agent_provider.contracts import RouteDecision, StageResult, parse_each

SIGNATURE_VERSION = 1


def failure_parts(validations: Sequence[StageResult]) -> list[tuple[str, str, str, str]]:
    """What failed, as sorted unique ``(dataset, column, rule, issue type)``; a failing result without
    issues counts as ``("", "", "", "<stage> failed")`` so it still has a signature."""
    parts = set()
    for result in validations:
        if result.passed:
            continue
        if not result.issues:
            parts.add(("", "", "", f"{result.stage} failed"))
        for issue in result.issues:
            parts.add((issue.dataset or "", issue.column or "", issue.rule or "", issue.type))
    return sorted(parts)


def failure_signature(validations: Sequence[StageResult], branches: Mapping[str, str]) -> str:
    """The canonical hash of the failure and the declared branches (sha256 of sorted, compact JSON)."""
    document = {
        "version": SIGNATURE_VERSION,
        "failures": [list(part) for part in failure_parts(validations)],
        "branches": [[str(key), str(branches[key])] for key in sorted(branches)],
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_failure(validations: Sequence[StageResult], limit: int = 3) -> str:
    """The signature's failure part in words, for the record's ``reuse_reason``."""
    parts = failure_parts(validations)
    words = []
    for dataset, column, rule, kind in parts[:limit]:
        where = ".".join(p for p in (dataset, column) if p) or "*"
        words.append(f"{kind} on {where}" + (f" (rule {rule})" if rule else ""))
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(words) + more


def rememberable(decision: RouteDecision) -> bool:
    """A decision made in its own run, by Claude (followed, not gated) or by a person; never a fallback,
    a proposal still awaiting a person, a copy of an earlier decision, or the rule that all checks passed."""
    return (
        decision.signature is not None
        and decision.decided_at is not None
        and decision.run_id is not None
        and decision.reused_from is None
        and not decision.fallback_used
        and (decision.low_confidence is None or decision.approved_by is not None)
        and not decision.awaiting_approval
        and bool(decision.model or decision.approved_by)
    )


@dataclass(frozen=True)
class Remembered:
    """The decision to follow and why it matched."""

    decision: RouteDecision
    reason: str


def recall(
    records: Iterable[Any] | None,
    *,
    signature: str,
    options: Sequence[str],
    now: datetime,
    reuse_for: timedelta,
    current_run_id: str | None = None,
) -> Remembered | None:
    """The newest rememberable record with ``signature`` decided within ``reuse_for`` of ``now``.

    ``records`` are decision records as stored (dicts or ``RouteDecision``); anything that does not parse
    (another version's record, a cleared value) is ignored. The current run's own record is ignored.
    """
    matching = [
        d
        for d in parse_each(records, RouteDecision)
        if rememberable(d) and d.signature == signature and d.run_id != current_run_id and d.route in options
    ]
    fresh = [d for d in matching if d.decided_at is not None and now - d.decided_at <= reuse_for]
    if not fresh:
        return None
    newest = max(fresh, key=lambda d: (d.decided_at, d.run_id or ""))
    who = f"approved by {newest.approved_by}" if newest.approved_by else f"chosen by Claude ({newest.model})"
    age = now - newest.decided_at if newest.decided_at else timedelta(0)
    reason = (
        f"same failure and branches (signature {signature[:12]}) as run {newest.run_id}, {who} "
        f"{_age(age)} ago, within reuse_for {_age(reuse_for)}"
    )
    return Remembered(decision=newest, reason=reason)


def reused(remembered: Remembered, *, run_id: str, failure: str = "") -> RouteDecision:
    """The record of following ``remembered`` in run ``run_id``: its route, rationale and approval, no usage."""
    from airflow_agent_provider.contracts import Usage

    source = remembered.decision
    reason = f"{remembered.reason}; failing: {failure}" if failure else remembered.reason
    return source.model_copy(
        update={
            "run_id": run_id,
            "usage": Usage(),
            "reused_from": source.run_id,
            "reuse_reason": reason,
            "proposed_route": None,
        }
    )


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
