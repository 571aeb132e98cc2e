"""Which model answers which judgment point.

A small, cheap model reads failures (diagnosis); a stronger one makes the decisions that change
what happens to data (routing, fix plans, SQL). Both are current, non-deprecated ids of the
``anthropic`` SDK's model list with confirmed prices and structured-output support. Precedence
(``claude.Claude.model_for``): the operator's ``model``, the connection's extra ``model``, the tier.
"""

from __future__ import annotations

from typing import Literal

JudgmentPoint = Literal["diagnose", "route", "fix", "sql"]

SMALL_MODEL = "claude-haiku-4-5"
STRONG_MODEL = "claude-sonnet-4-6"

TIERS: dict[str, str] = {
    "diagnose": SMALL_MODEL,
    "route": STRONG_MODEL,
    "fix": STRONG_MODEL,
    "sql": STRONG_MODEL,
}

MAX_OUTPUT_TOKENS: dict[str, int] = {
    "diagnose": 1024,
    "route": 1024,
    "fix": 2048,
    "sql": 4096,
}
"""``max_tokens`` per point: room for the answer (and adaptive thinking on 5.x models), no more."""
