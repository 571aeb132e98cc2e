"""What the model may answer at a judgment point, and the records we keep of it.

Model answers are validated against these models; anything else is off-contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_agent_provider.contracts.identifiers import Identifier
from airflow_agent_provider.contracts.types import LogicalType
from airflow_agent_provider.contracts.usage import Usage


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Diagnosis(_Answer):
    """Claude's reading of a failed validation."""

    summary: str = Field(max_length=2000)
    likely_cause: str = Field(max_length=2000)
    recommendation: str = Field(max_length=2000)
    severity: Literal["low", "medium", "high"] = "medium"


class RouteDecision(BaseModel):
    """The record of a routing decision, pushed to XCom key ``decision`` before branching."""

    model_config = ConfigDict(extra="forbid")

    route: str
    rationale: str = ""
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    options: list[str] = Field(default_factory=list)
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    fallback_used: bool = False
    fallback_reason: str | None = None
    proposed_route: str | None = None
    approved_by: str | None = None
    run_id: str | None = Field(default=None, description="the DAG run that made this record")
    signature: str | None = Field(
        default=None, description="hash of the failure (rules, columns, issue types) and the declared branches"
    )
    decided_at: datetime | None = Field(default=None, description="when the route was decided (kept on reuse)")
    reused_from: str | None = Field(default=None, description="the run whose decision was followed, no model call")
    reuse_reason: str | None = Field(default=None, description="why the remembered decision matched")
    low_confidence: float | None = Field(
        default=None, description="Claude's confidence when it was below min_confidence (the answer was not followed)"
    )
    awaiting_approval: bool = Field(default=False, description="a proposal a person has not answered yet")

    def notes(self) -> list[str]:
        """How the route came about beyond ``fallback_reason``: reused from memory, gated, approved."""
        notes = []
        if self.reused_from:
            notes.append(f"reused from run {self.reused_from}, no model call")
        if self.low_confidence is not None and not self.fallback_used:
            notes.append(f"low confidence {self.low_confidence:.2f}, below the gate")
        if self.approved_by:
            notes.append(f"approved by {self.approved_by}")
        return notes


RowOp = Literal[
    "is_null",
    "equals",
    "not_equals",
    "in_list",
    "not_in_list",
    "lt",
    "le",
    "gt",
    "ge",
    "regex_mismatch",
    "not_castable",
]


class RowRule(_Answer):
    """Which rows a drop or quarantine action touches: a single comparison on one column."""

    column: Identifier
    op: RowOp
    value: str | int | float | bool | list[str | int | float] | None = None
    to_type: LogicalType | None = Field(default=None, description="for not_castable: the target type")


class RenameColumn(_Answer):
    action: Literal["rename_column"]
    column: Identifier
    to: Identifier


class CastColumn(_Answer):
    action: Literal["cast_column"]
    column: Identifier
    to_type: LogicalType
    format: str | None = Field(default=None, max_length=64, description="strptime format for date/timestamp text")


class FillDefault(_Answer):
    action: Literal["fill_default"]
    column: Identifier
    value: str | int | float | bool


class DropRows(_Answer):
    action: Literal["drop_rows"]
    rule: RowRule


class QuarantineRows(_Answer):
    action: Literal["quarantine_rows"]
    rule: RowRule
    target: Identifier = Field(description="dataset/table name the quarantined rows are written to")


FixAction = Annotated[
    RenameColumn | CastColumn | FillDefault | DropRows | QuarantineRows, Field(discriminator="action")
]


class FixPlan(_Answer):
    """A schema/quality fix plan in the closed vocabulary; applied by our code, never by the model."""

    actions: list[FixAction] = Field(max_length=20)
    rationale: str = Field(default="", max_length=2000)

    @field_validator("actions")
    @classmethod
    def _not_empty(cls, value: list[FixAction]) -> list[FixAction]:
        if not value:
            raise ValueError("a fix plan needs at least one action")
        return value
