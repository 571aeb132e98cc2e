"""What the run page and the DAG page show, built from what Airflow's REST API returns.

Plain values in, dataclasses out: no HTTP, no Airflow import. The run's stage results are parsed once by
the report operator's own :class:`~airflow_agent_provider.operators.report.TaskOutcome` and summarized by
its :func:`~airflow_agent_provider.operators.report.build_state`, so the page and the run's report agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from airflow_agent_provider.contracts import Issue, PipelineState, RouteDecision, StageSummary, Usage
from airflow_agent_provider.operators.report import TaskOutcome, build_state, pipeline_order, row_counts, worst_state

REPORT_OPERATOR = "PipelineReportOperator"
NOT_RUN = ("skipped", "removed", "none", "upstream_failed", "scheduled", "queued")


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp from the REST API (``Z`` or an offset), or None."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def log_url(ui_base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The Airflow UI page of a task instance (its log is the page's first tab)."""
    url = f"{ui_base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index >= 0 else url


@dataclass
class Decider:
    """Who chose the route: ``claude`` (rationale, confidence), ``fallback`` (why), ``person``, ``rule``."""

    kind: str
    label: str
    detail: str = ""


def decided_by(decision: RouteDecision) -> Decider:
    if decision.approved_by:
        proposed = f" (Claude proposed {decision.proposed_route})" if decision.proposed_route else ""
        return Decider("person", f"approved by {decision.approved_by}", f"route {decision.route}{proposed}")
    if decision.fallback_used:
        return Decider("fallback", "declared fallback", decision.fallback_reason or "Claude gave no usable answer")
    if decision.model:
        return Decider("claude", f"Claude ({decision.model})", decision.rationale)
    return Decider("rule", "no model call", decision.rationale or "every check passed")


@dataclass
class Quarantined:
    task_id: str
    rows: int
    by_rule: dict[str, int]
    table: str | None = None
    rows_loaded: int | None = None


@dataclass
class StageRow:
    """One task of the run: its Airflow state, timing, rows, issues and model usage."""

    task_id: str
    stage: str
    state: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    rows_in: int | None
    rows_out: int | None
    issues: list[Issue]
    usage: Usage
    log_url: str
    tries: int = 0
    instances: int = 1


@dataclass
class RunView:
    dag_id: str
    run_id: str
    state: str
    logical_date: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    stages: list[StageRow]
    decisions: list[RouteDecision]
    usage: Usage
    rows_loaded: int
    quarantined: list[Quarantined]
    status: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def route(self) -> RouteDecision | None:
        return self.decisions[-1] if self.decisions else None


def _upstream(tasks: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    upstream: dict[str, set[str]] = {str(t["task_id"]): set() for t in tasks}
    for task in tasks:
        for child in task.get("downstream_task_ids") or []:
            upstream.setdefault(child, set()).add(str(task["task_id"]))
    return upstream


def operator_name(task: Mapping[str, Any]) -> str:
    """The class name of a task's operator, as the REST API's ``/tasks`` gives it."""
    ref = task.get("class_ref") or {}
    return str(ref.get("class_name") or task.get("operator_name") or "")


def report_tasks(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the DAG's ``PipelineReportOperator`` tasks."""
    return [str(t["task_id"]) for t in tasks if operator_name(t) == REPORT_OPERATOR]


def stage_of_operator(class_name: str) -> str | None:
    """The stage one of the provider's operators runs, by class name (for tasks that left no stage result)."""
    from airflow_agent_provider import operators

    return getattr(getattr(operators, class_name), "stage", None) if class_name in operators.__all__ else None


def build_run_view(
    dag_run: Mapping[str, Any],
    tasks: Sequence[Mapping[str, Any]],
    task_instances: Sequence[Mapping[str, Any]],
    xcoms: Mapping[tuple[str, str], Sequence[Any]],
    ui_base: str = "",
) -> RunView:
    """The run page's content.

    :param dag_run: ``GET /dags/{dag_id}/dagRuns/{run_id}``.
    :param tasks: ``GET /dags/{dag_id}/tasks`` (``tasks``).
    :param task_instances: ``GET .../taskInstances`` (``task_instances``; mapped tasks once per index).
    :param xcoms: ``(task_id, key)`` -> values (one per map index) for keys ``return_value`` and ``decision``.
    :param ui_base: the Airflow UI's root path, for log links.
    """
    dag_id, run_id = str(dag_run["dag_id"]), str(dag_run["dag_run_id"])
    kinds = {str(t["task_id"]): operator_name(t) for t in tasks}
    upstream = _upstream(tasks)
    tis: dict[str, list[Mapping[str, Any]]] = {}
    for ti in task_instances:
        tis.setdefault(str(ti["task_id"]), []).append(ti)
    outcomes = [
        TaskOutcome.parse(
            task_id,
            worst_state([str(ti.get("state") or "none") for ti in tis.get(task_id, [])] or ["none"]),
            stage_of_operator(kinds.get(task_id, "")),
            xcoms.get((task_id, "return_value"), ()),
            xcoms.get((task_id, "decision"), ()),
        )
        for task_id in pipeline_order(upstream)
        if kinds.get(task_id) != REPORT_OPERATOR
    ]
    state = build_state(
        outcomes, pipeline_id=dag_id, dag_id=dag_id, run_id=run_id, started_at=parse_time(dag_run.get("start_date"))
    )
    rows_out = {o.task_id: state.stages[o.task_id].rows_out for o in outcomes}
    stages = [
        _stage_row(
            o,
            state.stages[o.task_id],
            tis=tis.get(o.task_id, []),
            upstream=upstream,
            rows_out=rows_out,
            where=(ui_base, dag_id, run_id),
        )
        for o in outcomes
    ]
    return RunView(
        dag_id=dag_id,
        run_id=run_id,
        state=str(dag_run.get("state") or "none"),
        logical_date=parse_time(dag_run.get("logical_date")),
        started_at=parse_time(dag_run.get("start_date")),
        ended_at=parse_time(dag_run.get("end_date")),
        stages=stages,
        decisions=state.decisions,
        usage=state.usage,
        rows_loaded=state.rows_loaded,
        quarantined=[q for o in outcomes for q in _quarantined(o)],
        status=state.status,
        errors=state.errors,
        warnings=state.warnings,
    )


def _stage_row(
    outcome: TaskOutcome,
    summary: StageSummary,
    *,
    tis: Sequence[Mapping[str, Any]],
    upstream: Mapping[str, set[str]],
    rows_out: Mapping[str, int | None],
    where: tuple[str, str, str],
) -> StageRow:
    starts = [t for t in (parse_time(ti.get("start_date")) for ti in tis) if t is not None]
    ends = [t for t in (parse_time(ti.get("end_date")) for ti in tis) if t is not None]
    durations = [float(ti["duration"]) for ti in tis if ti.get("duration") is not None]
    map_index = int(tis[0].get("map_index", -1)) if len(tis) == 1 else -1
    if outcome.state in NOT_RUN:  # a skipped task has a start date: when it was skipped
        starts, ends = [], []
    return StageRow(
        task_id=outcome.task_id,
        stage=summary.stage,
        state=outcome.state or "none",
        status=summary.status,
        started_at=min(starts) if starts else summary.started_at,
        ended_at=max(ends) if ends else None,
        duration_s=max(durations) if durations else summary.duration_s,
        rows_in=_rows_in(outcome, summary, upstream, rows_out),
        rows_out=rows_out[outcome.task_id],
        issues=[issue for r in outcome.results for issue in r.issues],
        usage=summary.usage + sum((d.usage for d in outcome.decisions), Usage()),
        log_url=log_url(*where, outcome.task_id, map_index),
        tries=max((int(ti.get("try_number") or 0) for ti in tis), default=0),
        instances=max(len(tis), 1),
    )


def _rows_in(
    outcome: TaskOutcome, summary: StageSummary, upstream: Mapping[str, set[str]], rows_out: Mapping[str, int | None]
) -> int | None:
    """What the stage was given, as the report counts it, else what its upstream stages put out.

    None for a source, and for a task that moves no rows (a branch, a plain task).
    """
    if not outcome.results:
        return None
    if summary.rows_in is not None:
        return summary.rows_in
    counts = [rows_out[u] for u in upstream.get(outcome.task_id, ()) if rows_out.get(u) is not None]
    return sum(c for c in counts if c is not None) if counts else None


def _quarantined(outcome: TaskOutcome) -> list[Quarantined]:
    found = []
    for result in outcome.results:
        rows = row_counts(result)[2] or 0  # a remediation counts its rows per quarantine target
        if rows:
            found.append(
                Quarantined(
                    task_id=outcome.task_id,
                    rows=rows,
                    by_rule={str(k): int(v) for k, v in (result.metrics.get("quarantined_by") or {}).items()},
                    table=result.metrics.get("quarantine_table"),
                    rows_loaded=result.metrics.get("quarantine_rows_loaded"),
                )
            )
    return found


@dataclass
class HistoryPoint:
    """One DAG run on the DAG page: its day, state, rows loaded, failing checks, route and model cost."""

    run_id: str
    day: datetime | None
    state: str
    rows_loaded: int | None
    failing_checks: int | None
    route: str | None
    decider: str | None
    cost_usd: float | None
    run_url: str

    @property
    def failed(self) -> bool:
        return self.state == "failed"


def history_point(
    dag_run: Mapping[str, Any], report: Mapping[str, Any] | None, ui_base: str = "", run_tab: str = ""
) -> HistoryPoint:
    """A run and its pipeline-state document (the report task's XCom), or None when it left none.

    ``run_tab``: the run page's tab in Airflow's UI (its ``url_route``), where the day links to.
    """
    dag_id, run_id = str(dag_run["dag_id"]), str(dag_run["dag_run_id"])
    day = parse_time(dag_run.get("logical_date")) or parse_time(dag_run.get("run_after"))
    url = f"{ui_base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    url = f"{url}/plugin/{run_tab}" if run_tab else url
    state_doc = _state(report)
    if state_doc is None:
        return HistoryPoint(run_id, day, str(dag_run.get("state")), None, None, None, None, None, url)
    decision = state_doc.decisions[-1] if state_doc.decisions else None
    return HistoryPoint(
        run_id=run_id,
        day=day,
        state=str(dag_run.get("state")),
        rows_loaded=state_doc.rows_loaded,
        failing_checks=sum(s.issues for s in state_doc.stages.values() if s.stage == "validate"),
        route=decision.route if decision else None,
        decider=decided_by(decision).kind if decision else None,
        cost_usd=state_doc.usage.cost_usd,
        run_url=url,
    )


def _state(report: Mapping[str, Any] | None) -> PipelineState | None:
    if not isinstance(report, Mapping):
        return None
    try:
        return PipelineState.model_validate(dict(report))
    except ValueError:
        return None


def build_history(
    dag_runs: Sequence[Mapping[str, Any]], reports: Mapping[str, Any], ui_base: str = "", run_tab: str = ""
) -> list[HistoryPoint]:
    """The DAG page's points, oldest day first."""
    points = [history_point(run, reports.get(str(run["dag_run_id"])), ui_base, run_tab) for run in dag_runs]
    return sorted(points, key=lambda p: (p.day is None, p.day or datetime.min, p.run_id))
