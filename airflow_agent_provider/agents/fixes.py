"""Propose a fix plan in the closed vocabulary (rename, cast, default, drop, quarantine)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.prompts import FIX_SYSTEM, quote_json, validation_section
from airflow_agent_provider.contracts import (
    CastColumn,
    DropRows,
    FillDefault,
    FixPlan,
    QualityRule,
    QuarantineRows,
    RenameColumn,
    StageResult,
    Usage,
)

ACTIONS: dict[str, type[BaseModel]] = {
    "rename_column": RenameColumn,
    "cast_column": CastColumn,
    "fill_default": FillDefault,
    "drop_rows": DropRows,
    "quarantine_rows": QuarantineRows,
}
ALL_ACTIONS: tuple[str, ...] = tuple(ACTIONS)
MAX_HISTORY = 3
MAX_HISTORY_CHARS = 2500
MAX_SPEC_CHARS = 1500


def check_allowed_actions(allowed: Sequence[str] | None) -> tuple[str, ...]:
    """The allowed action names (all five when None); unknown names are a ValueError."""
    names = tuple(ALL_ACTIONS if allowed is None else allowed)
    unknown = sorted(set(names) - set(ACTIONS))
    if unknown or not names:
        raise ValueError(f"allowed_actions must be a non-empty subset of {list(ALL_ACTIONS)}, got {list(names)}")
    return tuple(a for a in ALL_ACTIONS if a in names)


def fix_answer_model(allowed: Sequence[str]) -> type[BaseModel]:
    """What Claude may answer: a plan whose actions can only be the allowed ones.

    Parsed into ``contracts.FixPlan`` afterwards; its JSON schema keeps the title ``FixPlan``, which
    FakeClaude scripts match on.
    """
    classes = tuple(ACTIONS[name] for name in check_allowed_actions(allowed))
    action: Any = classes[0] if len(classes) == 1 else Annotated[Union[classes], Field(discriminator="action")]  # noqa: UP007
    return create_model(
        "FixPlanAnswer",
        __config__=ConfigDict(extra="forbid", title="FixPlan"),
        actions=(list[action], Field(min_length=1, max_length=20)),
        rationale=(str, Field(default="", max_length=2000)),
    )


def fix_prompt(
    validation: StageResult,
    *,
    expected_schema: Mapping[str, str] | None,
    quality_rules: Sequence[QualityRule | Mapping[str, Any]],
    allowed: Sequence[str],
    history: Sequence[Mapping[str, Any]],
) -> str:
    rules = [r.model_dump(exclude_none=True) if isinstance(r, QualityRule) else dict(r) for r in quality_rules]
    parts = [
        "This staged dataset failed validation. Propose a fix plan that makes it pass.",
        f"Allowed actions: {', '.join(allowed)}.",
        f"Expected schema (column: type): {quote_json(dict(expected_schema or {}))[:MAX_SPEC_CHARS]}",
        f"Quality rules: {quote_json(rules)[:MAX_SPEC_CHARS]}",
        f"Validation result:\n{validation_section([validation])}",
    ]
    if history:
        recent = quote_json(list(history)[-MAX_HISTORY:])
        if len(recent) > MAX_HISTORY_CHARS:
            recent = recent[:MAX_HISTORY_CHARS] + "…(truncated)"
        parts.append(f"Earlier plans in this run and what validation found after each:\n<data>\n{recent}\n</data>")
    parts.append("Answer with actions and a short rationale.")
    return "\n\n".join(parts)


def propose_fix(
    claude: Claude,
    validation: StageResult,
    *,
    expected_schema: Mapping[str, str] | None = None,
    quality_rules: Sequence[QualityRule | Mapping[str, Any]] = (),
    allowed_actions: Sequence[str] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
) -> tuple[FixPlan, Usage]:
    """Ask Claude for a ``FixPlan`` using only ``allowed_actions`` (all five when None).

    :param history: earlier iterations (plan and validation summary), so a failed plan is not repeated.
    :raises ModelCallError: no valid plan within the policy (an action outside the allowed set is off-contract).
    """
    allowed = check_allowed_actions(allowed_actions)
    prompt = fix_prompt(
        validation, expected_schema=expected_schema, quality_rules=quality_rules, allowed=allowed, history=history
    )
    answer = claude.ask(
        "fix",
        system=FIX_SYSTEM,
        user=prompt,
        output=fix_answer_model(allowed),
        check=lambda value: _only(value, allowed),
    )
    return FixPlan.model_validate(answer.value.model_dump()), answer.usage


def _only(value: BaseModel, allowed: Sequence[str]) -> None:
    used = {str(getattr(action, "action", "")) for action in getattr(value, "actions", [])}
    if used - set(allowed):
        raise ValueError(f"actions {sorted(used - set(allowed))} are not allowed; use only {list(allowed)}")
