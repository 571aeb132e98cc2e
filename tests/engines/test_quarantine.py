"""Quarantine plans built from real validation issues, applied to real staged Parquet in DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_agent_provider.contracts import DatasetRef, StageResult, parse_quality_rules
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.quarantine import quarantine_dataset, quarantine_plan
from airflow_agent_provider.engines.validate import validate_dataset
from scripts.sample_data import EVENT_TYPES, day_events

EVENTS = pd.DataFrame(
    {
        "event_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "user_id": pd.array([10, None, 12, 13, 14, 15, None, 17, 18, 19], dtype="Int64"),
        "event_type": ["click", "view", "bogus", "click", "click", "click", "click", "BAD", "view", "click"],
        "revenue": [1.0, 2.0, 3.0, -1.0, 5.0, 500.0, 7.0, 8.0, 9.0, None],
        "code": ["A1", "A2", "A3", "A4", "zz", "A6", "A7", "A8", "A9", "A10"],
        "amount": ["1.5", "2", "x", "4", "5", "6", "7", "8", "9", None],
    }
)
SCHEMA = {"event_id": "integer", "user_id": "integer", "amount": "float"}
RULES = [
    {"column": "event_id", "rule": "unique"},
    {"column": "user_id", "rule": "not_null"},
    {"column": "event_type", "rule": "in_list", "values": ["click", "view"]},
    {"column": "revenue", "rule": "range", "min": 0, "max": 100},
    {"column": "code", "rule": "regex", "pattern": r"^A\d+$"},
]
Validate = Callable[..., StageResult]


def stage(frame: pd.DataFrame, uri: str) -> DatasetRef:
    writer = staging.DatasetWriter(uri)
    writer.write(frame)
    return writer.finish()


def read(ref: DatasetRef, columns: str = "*") -> list[tuple[Any, ...]]:
    con = staging.connect()
    try:
        return con.execute(f"SELECT {columns} FROM {staging.scan_sql(ref.uri)} ORDER BY 1").fetchall()
    finally:
        con.close()


@pytest.fixture
def validate(staging_root: str) -> Validate:
    """Stage a frame as ``events`` and validate it for real."""

    def _validate(
        frame: pd.DataFrame = EVENTS, rules: list[dict[str, Any]] = RULES, schema: dict[str, str] = SCHEMA
    ) -> StageResult:
        ref = stage(frame, f"{staging_root}/run/extract/events")
        return validate_dataset(ref, dataset="events", expected_schema=schema, quality_rules=parse_quality_rules(rules))

    return _validate


def uri_for(staging_root: str) -> Callable[[str], str]:
    return lambda name: f"{staging_root}/run/quarantine/{name}"


def quarantine(row: dict[str, Any]) -> dict[str, Any]:
    return {"action": "quarantine_rows", "rule": {"value": None, "to_type": None, **row}, "target": "events_quarantine"}


class TestQuarantinePlan:
    def test_each_row_issue_becomes_its_row_rule_schema_first(self, validate: Validate) -> None:
        plan, unhandled = quarantine_plan(validate(), parse_quality_rules(RULES))

        assert plan is not None and unhandled == []
        assert [a.model_dump() for a in plan.actions] == [
            quarantine({"column": "amount", "op": "not_castable", "to_type": "float"}),
            {"action": "cast_column", "column": "amount", "to_type": "float", "format": None},
            quarantine({"column": "user_id", "op": "is_null"}),
            quarantine({"column": "event_type", "op": "not_in_list", "value": ["click", "view"]}),
            quarantine({"column": "revenue", "op": "lt", "value": 0}),
            quarantine({"column": "revenue", "op": "gt", "value": 100}),
            quarantine({"column": "code", "op": "regex_mismatch", "value": r"^A\d+$"}),
        ]

    def test_issues_no_row_rule_expresses_are_returned_unhandled(self, validate: Validate) -> None:
        frame = EVENTS.assign(event_id=[1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        rules = [
            {"column": "event_id", "rule": "unique"},
            {"rule": "row_count_between", "min": 100},
            {"rule": "sql", "name": "revenue_positive", "predicate": "revenue > 0 OR revenue IS NULL"},
        ]
        validation = validate(frame, rules, {"missing": "string"})

        plan, unhandled = quarantine_plan(validation, parse_quality_rules(rules))

        assert plan is None
        assert [i.type for i in unhandled] == [
            "missing_column",
            "duplicate_values",
            "row_count_out_of_range",
            "sql_predicate_failed",
        ]

    def test_the_rules_arguments_are_used_not_the_issues_bounded_copy(self, validate: Validate) -> None:
        allowed = ["click", "view", *(f"type_{i}" for i in range(60))]
        rules = [{"column": "event_type", "rule": "in_list", "values": allowed}]
        validation = validate(rules=rules, schema={})
        assert len(validation.issues[0].expected) == 50  # the issue keeps a bounded copy

        plan, _ = quarantine_plan(validation, parse_quality_rules(rules))

        assert plan is not None and plan.actions[0].rule.value == allowed  # type: ignore[union-attr]

    def test_an_issue_without_its_rule_is_unhandled(self, validate: Validate) -> None:
        plan, unhandled = quarantine_plan(validate(), [])

        assert plan is not None and [a.action for a in plan.actions] == ["quarantine_rows", "cast_column"]
        assert [i.rule for i in unhandled] == [
            "not_null(user_id)",
            "in_list(event_type)",
            "range(revenue)",
            "regex(code)",
        ]

    def test_an_integer_column_holding_fractions_is_left_alone(self, validate: Validate) -> None:
        frame = EVENTS.assign(revenue=[1.5] * 10)
        validation = validate(frame, [], {"revenue": "integer"})

        plan, unhandled = quarantine_plan(validation, [])

        assert plan is None and [(i.type, i.column) for i in unhandled] == [("schema_mismatch", "revenue")]

    def test_a_validation_of_several_datasets_needs_the_name(self, validate: Validate) -> None:
        validation = validate()
        events = validation.datasets["events"]
        both = validation.model_copy(update={"datasets": {"events": events, "other": events}})

        with pytest.raises(ValueError, match="holds datasets events, other; name the one to quarantine"):
            quarantine_plan(both, [])
        with pytest.raises(ValueError, match="has no dataset 'users'"):
            quarantine_plan(validation, [], dataset="users")


class TestQuarantineDataset:
    def test_bad_rows_are_split_off_as_they_arrived_and_the_clean_rows_pass(
        self, validate: Validate, staging_root: str
    ) -> None:
        result = quarantine_dataset(
            validate(), uri_for=uri_for(staging_root), quality_rules=parse_quality_rules(RULES), expected_schema=SCHEMA
        )

        assert (result.stage, result.status, result.issues) == ("quarantine", "pass", [])
        clean, bad = result.datasets["events"], result.datasets["events_quarantine"]
        assert clean.uri == f"{staging_root}/run/quarantine/events"
        assert [r[0] for r in read(clean, "event_id")] == [1, 9, 10]
        assert clean.columns["amount"] == "float" and read(clean, "event_id, amount")[0] == (1, 1.5)
        assert read(bad, "event_id, user_id, amount") == [
            (2, None, "2"),
            (3, 12, "x"),
            (4, 13, "4"),
            (5, 14, "5"),
            (6, 15, "6"),
            (7, None, "7"),
            (8, 17, "8"),
        ]
        metrics = result.metrics
        assert (metrics["rows_before"], metrics["rows_after"], metrics["rows_quarantined"]) == (10, 3, 7)
        assert metrics["quarantined_by"] == {
            "amount not_castable": 1,
            "user_id is_null": 2,
            "event_type not_in_list": 1,
            "revenue lt": 1,
            "revenue gt": 1,
            "code regex_mismatch": 1,
        }
        assert metrics["unhandled_issues"] == [] and len(metrics["plan"]["actions"]) == 7

    def test_an_issue_quarantine_cannot_fix_fails_the_clean_rows(self, validate: Validate, staging_root: str) -> None:
        frame = EVENTS.assign(event_id=[1, 2, 3, 4, 5, 6, 7, 8, 9, 9])
        rules = [{"column": "event_id", "rule": "unique"}, {"column": "user_id", "rule": "not_null"}]

        result = quarantine_dataset(
            validate(frame, rules, {}), uri_for=uri_for(staging_root), quality_rules=parse_quality_rules(rules)
        )

        assert result.status == "fail"
        assert [i.type for i in result.issues] == ["duplicate_values"]
        assert (result.metrics["rows_quarantined"], result.metrics["rows_after"]) == (2, 8)
        assert result.warnings == ["not quarantinable: events.event_id: 2 rows share 1 duplicated values, e.g. 9"]

    def test_a_passing_validation_passes_through_and_stages_nothing(
        self, validate: Validate, staging_root: str
    ) -> None:
        validation = validate(rules=[], schema={})

        result = quarantine_dataset(validation, uri_for=uri_for(staging_root))

        assert result.status == "pass" and result.datasets == validation.datasets
        assert result.metrics["rows_quarantined"] == 0 and result.metrics["plan"] is None
        assert not (Path(staging_root) / "run" / "quarantine").exists()

    def test_the_sample_bad_day_quarantines_exactly_its_broken_rows(self, staging_root: str) -> None:
        rows = list(day_events(date(2026, 11, 12), 5000, 500, 12, bad=True))
        columns = ["event_id", "user_id", "event_type", "event_ts", "revenue", "session_id", "campaign_id"]
        frame = pd.DataFrame(rows, columns=columns).astype({"user_id": "Int64"})
        broken = {r[0] for r in rows if r[1] is None or r[2] not in EVENT_TYPES or (r[4] is not None and r[4] < 0)}
        rules = [
            {"column": "user_id", "rule": "not_null"},
            {"column": "event_type", "rule": "in_list", "values": list(EVENT_TYPES)},
            {"column": "revenue", "rule": "range", "min": 0},
        ]
        ref = stage(frame, f"{staging_root}/run/extract/events")
        validation = validate_dataset(ref, dataset="events", quality_rules=parse_quality_rules(rules))

        result = quarantine_dataset(validation, uri_for=uri_for(staging_root), quality_rules=parse_quality_rules(rules))

        assert result.status == "pass"
        assert {r[0] for r in read(result.datasets["events_quarantine"], "event_id")} == broken
        assert result.metrics["rows_quarantined"] == len(broken) == 5000 - result.metrics["rows_after"]
        assert sum(result.metrics["quarantined_by"].values()) == len(broken)
