"""The pipeline-state document, built from what each task left behind (no Airflow run needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.contracts import DatasetRef, Issue, StageResult, Usage
from airflow_agent_provider.operators.report import (
    TaskOutcome,
    build_state,
    format_table,
    merge_states,
    pipeline_order,
    write_document,
)


def _result(stage: str, status: str = "success", **fields: Any) -> dict[str, Any]:
    return StageResult(stage=stage, status=status, **fields).model_dump(mode="json")  # type: ignore[arg-type]


def _ref(rows: int) -> DatasetRef:
    return DatasetRef(uri=f"/staging/{rows}", row_count=rows)


class TestMergeStates:
    def test_mapped_instances_merge_to_their_worst_state(self) -> None:
        raw = {"extract_0": "success", "extract_1": "failed", "load": "upstream_failed", "extract_sql": "success"}
        merged = merge_states(raw, ["extract", "extract_sql", "load", "report"])
        assert merged == {"extract": "failed", "extract_sql": "success", "load": "upstream_failed"}


class TestPipelineOrder:
    def test_each_task_comes_after_its_upstream_ties_in_declaration_order(self) -> None:
        upstream = {
            "report": {"load", "abort"},
            "load": {"route"},
            "abort": {"route"},
            "route": {"b", "a"},
            "a": set(),
            "b": set(),
        }
        assert pipeline_order(upstream) == ["a", "b", "route", "load", "abort", "report"]


class TestBuildState:
    def _outcomes(self) -> list[TaskOutcome]:
        usage = Usage(model_calls=1, input_tokens=100, output_tokens=20, cost_usd=0.01)
        issue = Issue(type="null_rate_exceeded", column="user_id", affected_rows=7, dataset="events")
        return [
            TaskOutcome.parse(
                "extract", "success", "extract", [_result("extract", datasets={"e": _ref(10), "u": _ref(5)})]
            ),
            TaskOutcome.parse(
                "validate", "success", "validate", [_result("validate", "fail", issues=[issue], usage=usage)]
            ),
            TaskOutcome.parse(
                "route", "success", None, [], [{"route": "quarantine", "usage": {"model_calls": 1, "cost_usd": 0.02}}]
            ),
            TaskOutcome("transform", "failed", "transform"),
            TaskOutcome("load", "upstream_failed", "load"),
        ]

    def test_failed_and_skipped_stages_are_reported_from_their_task_state(self) -> None:
        state = build_state(self._outcomes(), pipeline_id="p", dag_id="d", run_id="r")

        assert state.status == "failed"
        assert {t: s.status for t, s in state.stages.items()} == {
            "extract": "success",
            "validate": "fail",
            "route": "success",
            "transform": "failed",
            "load": "upstream_failed",
        }
        assert state.stages["extract"].rows == 15
        assert state.stages["validate"].top_issues == ["null_rate_exceeded on events.user_id: 7 rows"]
        assert state.stages["route"].stage == "branch"
        assert state.errors == [
            "transform: task failed (status failed)",
            "load: task upstream_failed (status upstream_failed)",
        ]

    def test_usage_sums_stage_results_and_decisions(self) -> None:
        state = build_state(self._outcomes(), pipeline_id="p", dag_id="d", run_id="r")
        assert (state.usage.model_calls, state.usage.cost_usd) == (2, 0.03)
        assert [d.route for d in state.decisions] == ["quarantine"]

    def test_the_table_shows_reused_and_gated_decisions(self) -> None:
        from airflow_agent_provider.contracts import RouteDecision

        reused = RouteDecision(route="quarantine_rows", reused_from="scheduled__2026-11-01")
        gated = RouteDecision(
            route="escalate", fallback_used=True, fallback_reason="low_confidence: 0.55 < 0.70", low_confidence=0.55
        )
        outcomes = [TaskOutcome.parse("route", "success", None, [], [reused.model_dump(mode="json")])]
        outcomes.append(TaskOutcome.parse("route2", "success", None, [], [gated.model_dump(mode="json")]))
        lines = format_table(build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r"))
        assert lines[-2:] == [
            "route → quarantine_rows (reused from run scheduled__2026-11-01, no model call)",
            "route → escalate (fallback: low_confidence: 0.55 < 0.70)",
        ]
        document = build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r").model_dump(mode="json")
        assert document["decisions"][0]["reused_from"] == "scheduled__2026-11-01"
        assert document["decisions"][1]["low_confidence"] == 0.55

    def test_a_clean_run_with_a_skipped_branch_is_a_success(self) -> None:
        load = _result("load", metrics={"rows_loaded": 42})
        outcomes = [
            TaskOutcome("abort", "skipped"),
            TaskOutcome.parse("load", "success", "load", [load]),
        ]
        state = build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r")

        assert (state.status, state.rows_loaded) == ("success", 42)
        assert state.stages["load"].output_bytes == len(json.dumps(load))
        assert len(format_table(state)) == 4

    def test_each_stage_names_its_rows_in_out_and_quarantined(self) -> None:
        quarantine = _result(
            "quarantine", "pass",
            datasets={"events": _ref(336_776), "events_quarantine": _ref(100)},
            metrics={"rows_before": 336_876, "rows_after": 336_776, "rows_quarantined": 100,
                     "quarantine_datasets": ["events_quarantine"]},
        )  # fmt: skip
        remediate = _result(
            "remediate", "pass", datasets={"events": _ref(90), "rejects": _ref(10)},
            metrics={"rows_quarantined": {"rejects": 10}},
        )  # fmt: skip
        transform = _result("transform", datasets={"daily": _ref(7)}, metrics={"rows_before": 336_776})
        load = _result("load", metrics={"rows_loaded": 7})
        outcomes = [
            TaskOutcome.parse(
                "extract", "success", "extract", [_result("extract", datasets={"events": _ref(336_876)})]
            ),
            TaskOutcome.parse("quarantine", "success", "quarantine", [quarantine]),
            TaskOutcome.parse("remediate", "success", "remediate", [remediate]),
            TaskOutcome.parse("transform", "success", "transform", [transform]),
            TaskOutcome.parse("load", "success", "load", [load]),
        ]

        state = build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r")

        counts = {t: (s.rows_in, s.rows_out, s.rows_quarantined, s.rows) for t, s in state.stages.items()}
        assert counts == {
            "extract": (None, 336_876, None, 336_876),
            "quarantine": (336_876, 336_776, 100, 336_776),
            "remediate": (None, 90, 10, 90),
            "transform": (336_776, 7, None, 7),
            "load": (None, 7, None, 7),
        }
        header, quarantine_line = format_table(state)[1], format_table(state)[3]
        assert all(name in header for name in ("rows in", "rows out", "quarantined"))
        assert quarantine_line.split()[3:6] == ["336876", "336776", "100"]

    def test_the_document_and_the_table_state_the_data_interval(self) -> None:
        from datetime import datetime, timezone

        start, end = datetime(2026, 11, 9, tzinfo=timezone.utc), datetime(2026, 11, 10, tzinfo=timezone.utc)

        state = build_state([], pipeline_id="p", dag_id="d", run_id="r", data_interval=(start, end), logical_date=end)

        document = state.model_dump(mode="json")
        assert (document["data_interval_start"], document["data_interval_end"]) == (
            "2026-11-09T00:00:00Z", "2026-11-10T00:00:00Z"
        )  # fmt: skip
        assert document["logical_date"] == "2026-11-10T00:00:00Z"
        assert (
            "(data interval 2026-11-09T00:00:00+00:00 to 2026-11-10T00:00:00+00:00 (end excluded))"
            in (format_table(state)[0])
        )

    def test_a_warning_repeated_by_later_stages_is_reported_once(self) -> None:
        extra = "events: 13 unexpected columns a (string), ..., not in expected_schema"
        outcomes = [
            TaskOutcome.parse("validate", "success", "validate", [_result("validate", "fail", warnings=[extra])]),
            TaskOutcome.parse(
                "quarantine", "success", "quarantine", [_result("quarantine", "pass", warnings=[extra, "other"])]
            ),
        ]

        state = build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r")

        assert state.warnings == [f"validate: {extra} (also quarantine)", "quarantine: other"]

    def test_usage_counts_are_integers_in_the_document(self) -> None:
        decision = {"route": "quarantine", "usage": {"model_calls": 1.0, "input_tokens": 768.0, "cost_usd": 0.5}}
        validate = _result("validate", "fail", usage=Usage(model_calls=1, input_tokens=100, cost_usd=0.25))
        outcomes = [
            TaskOutcome.parse("validate", "success", "validate", [validate]),
            TaskOutcome.parse("route", "success", None, [], [decision]),
        ]

        document = json.loads(
            json.dumps(build_state(outcomes, pipeline_id="p", dag_id="d", run_id="r").model_dump(mode="json"))
        )

        counts = [k for k in Usage.model_fields if k != "cost_usd"]
        for usage in (document["usage"], document["decisions"][0]["usage"], document["stages"]["validate"]["usage"]):
            assert all(type(usage[k]) is int for k in counts), usage
        assert (document["usage"]["model_calls"], document["usage"]["input_tokens"]) == (2, 868)

    @pytest.mark.parametrize(
        ("outcome", "status"),
        [
            pytest.param(TaskOutcome("load", "skipped", "load"), "partial", id="load-skipped"),
            pytest.param(
                TaskOutcome.parse("v", "success", "validate", [_result("validate", "fail")]),
                "partial",
                id="check-failed",
            ),
        ],
    )
    def test_a_run_that_loaded_nothing_or_found_issues_is_partial(self, outcome: TaskOutcome, status: str) -> None:
        assert build_state([outcome], pipeline_id="p", dag_id="d", run_id="r").status == status


class TestWriteDocument:
    def test_writes_json_creating_folders(self, tmp_path: Path) -> None:
        target = tmp_path / "reports" / "nested" / "run.json"
        write_document(str(target), {"status": "success"})
        assert json.loads(target.read_text()) == {"status": "success"}
