"""What Airflow's REST API returns for runs of the reference DAG, built from real stage-result contracts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_agent_provider.contracts import DatasetRef, Issue, PipelineState, RouteDecision, StageResult, Usage

DAG_ID = "daily_user_engagement"
T0 = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)
OPERATORS = {
    "extract_events": ("ExtractOperator", ["validate_events"]),
    "extract_users": ("ExtractOperator", ["validate_users"]),
    "validate_events": ("ValidateOperator", ["route"]),
    "validate_users": ("ValidateOperator", ["route"]),
    "route": ("RemediationBranchOperator", ["quarantine", "transform", "abort"]),
    "quarantine": ("QuarantineOperator", ["transform"]),
    "abort": ("_PythonDecoratedOperator", ["report"]),
    "transform": ("TransformOperator", ["load"]),
    "load": ("LoadOperator", ["report"]),
    "report": ("PipelineReportOperator", []),
}
CLAUDE_USAGE = Usage(model_calls=1, input_tokens=1800, output_tokens=240, cost_usd=0.0132)
DIAGNOSIS_USAGE = Usage(model_calls=1, input_tokens=900, output_tokens=120, cost_usd=0.0066)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def tasks() -> list[dict[str, Any]]:
    return [
        {
            "task_id": task_id,
            "downstream_task_ids": downstream,
            "operator_name": cls,
            "class_ref": {"class_name": cls, "module_path": "airflow_agent_provider.operators"},
        }
        for task_id, (cls, downstream) in OPERATORS.items()
    ]


def _ref(name: str, rows: int) -> DatasetRef:
    return DatasetRef(uri=f"file:///staging/{name}.parquet", row_count=rows, columns={"user_id": "integer"})


def _result(task_id: str, stage: str, status: str, offset: float, **fields: Any) -> dict[str, Any]:
    return StageResult(
        stage=stage,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        task_id=task_id,
        started_at=T0 + timedelta(seconds=offset),
        **fields,
    ).to_xcom()


def decision(who: str) -> RouteDecision:
    options = ["abort", "quarantine", "transform"]
    if who == "claude":
        return RouteDecision(
            route="quarantine",
            rationale="12 events have no user_id; the rest of the day is sound, so set them aside.",
            confidence=0.86,
            options=options,
            model="claude-sonnet-4-5",
            usage=CLAUDE_USAGE,
        )
    if who == "fallback":
        return RouteDecision(
            route="quarantine",
            options=options,
            model="claude-sonnet-4-5",
            fallback_used=True,
            fallback_reason="Claude unreachable after 3 attempts (HTTP 529 overloaded)",
        )
    return RouteDecision(
        route="transform", options=options, approved_by="maria", proposed_route="quarantine", usage=CLAUDE_USAGE
    )


def bad_run(who: str = "claude", run_id: str = "manual__bad") -> dict[str, Any]:
    """A day where events fail validation, the route quarantines the bad rows, and the rest loads."""
    issue = Issue(
        type="null_rate_exceeded",
        column="user_id",
        dataset="events",
        affected_rows=12,
        threshold=0.0,
        actual=0.012,
        sample=[None, "<script>alert(1)</script>", "  "],
    )
    xcoms = {
        ("extract_events", "return_value"): [
            _result(
                "extract_events", "extract", "success", 0, datasets={"events": _ref("events", 1000)}, duration_s=2.1
            )
        ],
        ("extract_users", "return_value"): [
            _result("extract_users", "extract", "success", 0, datasets={"users": _ref("users", 50)}, duration_s=1.4)
        ],
        ("validate_events", "return_value"): [
            _result(
                "validate_events",
                "validate",
                "fail",
                3,
                datasets={"events": _ref("events", 1000)},
                issues=[issue],
                usage=DIAGNOSIS_USAGE,
                duration_s=0.8,
            )
        ],
        ("validate_users", "return_value"): [
            _result("validate_users", "validate", "pass", 3, datasets={"users": _ref("users", 50)}, duration_s=0.3)
        ],
        ("route", "decision"): [decision(who).model_dump(mode="json")],
        ("quarantine", "return_value"): [
            _result(
                "quarantine",
                "quarantine",
                "pass",
                6,
                datasets={"events": _ref("events_clean", 988)},
                metrics={
                    "rows_before": 1000,
                    "rows_after": 988,
                    "rows_quarantined": 12,
                    "quarantined_by": {"user_id is_null": 12},
                    "quarantine_table": "events_quarantine",
                    "quarantine_rows_loaded": 12,
                },
                duration_s=1.2,
            )
        ],
        ("transform", "return_value"): [
            _result(
                "transform",
                "transform",
                "success",
                8,
                datasets={"daily": _ref("daily", 48)},
                metrics={"rows_before": 988, "rows_after": 48},
                duration_s=1.9,
            )
        ],
        ("load", "return_value"): [_result("load", "load", "success", 11, metrics={"rows_loaded": 48}, duration_s=0.7)],
    }
    states = {task_id: "success" for task_id in OPERATORS} | {"abort": "skipped"}
    return {"dag_run": _dag_run(run_id, "success"), "tis": _tis(run_id, states), "xcoms": xcoms}


def _dag_run(run_id: str, state: str, day: datetime = T0) -> dict[str, Any]:
    return {
        "dag_id": DAG_ID,
        "dag_run_id": run_id,
        "state": state,
        "logical_date": iso(day.replace(hour=0)),
        "run_after": iso(day),
        "start_date": iso(day),
        "end_date": iso(day + timedelta(seconds=14)),
    }


def _tis(run_id: str, states: dict[str, str]) -> list[dict[str, Any]]:
    starts = {"extract": 0, "validate": 3, "route": 5, "quarantine": 6, "transform": 8, "load": 11, "report": 13}
    tis = []
    for task_id, state in states.items():
        offset = next(v for k, v in starts.items() if task_id.startswith(k)) if state != "skipped" else None
        tis.append(
            {
                "task_id": task_id,
                "dag_run_id": run_id,
                "map_index": -1,
                "state": state,
                "try_number": 1,
                "start_date": iso(T0 + timedelta(seconds=offset)) if offset is not None else None,
                "end_date": iso(T0 + timedelta(seconds=offset + 1.5)) if offset is not None else None,
                "duration": 1.5 if offset is not None else None,
            }
        )
    return tis


def history(days: int = 30, failed_every: int = 7) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``days`` runs of a backfill (newest first, as the API returns them) and their report documents."""
    runs, reports = [], {}
    for i in range(days):
        day = T0 - timedelta(days=days - 1 - i)
        run_id = f"backfill__{day.date().isoformat()}T00:00:00+00:00"
        failed = i % failed_every == failed_every - 1
        bad = i % 3 == 0
        runs.append(_dag_run(run_id, "failed" if failed else "success", day))
        stages = {
            "validate_events": {"task_id": "validate_events", "stage": "validate", "status": "fail" if bad else "pass",
                                "issues": 2 if bad else 0},
            "load": {"task_id": "load", "stage": "load", "status": "failed" if failed else "success", "rows": 40 + i},
        }  # fmt: skip
        decisions = [decision("claude" if bad else "fallback").model_dump(mode="json")] if bad or failed else []
        usage = CLAUDE_USAGE if bad else Usage()
        reports[run_id] = PipelineState(
            pipeline_id=DAG_ID, dag_id=DAG_ID, run_id=run_id, status="failed" if failed else "success",
            stages=stages, decisions=decisions, usage=usage, rows_loaded=0 if failed else 40 + i,
        ).model_dump(mode="json")  # fmt: skip
    return list(reversed(runs)), reports
