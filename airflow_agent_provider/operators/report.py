"""PipelineReportOperator: gather every stage result of the run into one pipeline-state document."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow_agent_provider.operators.base import DECISION_KEY, StageOperator, stage_of
from airflow_agent_provider.operators.errors import PipelineFailed

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_agent_provider.contracts import PipelineState, RouteDecision, StageResult, StageSummary

_FAILED_STATES = ("failed", "upstream_failed")
_STATE_RANK = ("failed", "upstream_failed", "up_for_retry", "removed", "skipped", "success")
TOP_ISSUES = 3
PipelineStatus = Literal["success", "failed", "partial"]


@dataclass
class TaskOutcome:
    """What one task of the run left behind, parsed once: its state, stage results and routing decisions."""

    task_id: str
    state: str | None = None
    stage: str | None = None
    results: list[StageResult] = field(default_factory=list)
    decisions: list[RouteDecision] = field(default_factory=list)
    output_bytes: int = 0

    @classmethod
    def parse(
        cls,
        task_id: str,
        state: str | None,
        stage: str | None,
        values: Sequence[Any] = (),
        decisions: Sequence[Any] = (),
    ) -> TaskOutcome:
        """From the task's XCom: its return values (every map index) and its ``decision`` values."""
        from airflow_agent_provider.contracts import RouteDecision, StageResult, parse_each

        kept = [value for value in values if value is not None]
        return cls(
            task_id, state, stage, parse_each(kept, StageResult), parse_each(decisions, RouteDecision),
            output_bytes=sum(len(json.dumps(value, default=str)) for value in kept),
        )  # fmt: skip


class PipelineReportOperator(StageOperator):
    """Build the run's pipeline-state document from every other task's result, whatever happened.

    Runs last with ``trigger_rule="all_done"`` (place it downstream of the final tasks), so it reports
    failed, skipped and upstream-failed stages too: per stage the status, duration, start, the rows
    it was given (``rows_in``), passed on (``rows``/``rows_out``: a quarantine's clean rows, a load's
    rows loaded) and set aside (``rows_quarantined``), issue count and top issues, model usage and
    the XCom size; in total the usage (tokens, cost), the rows loaded, the routing decisions, the
    errors and warnings, and the data interval the run processed (``data_interval_start`` and
    ``data_interval_end``, with its ``logical_date``). Logs a compact table and returns the document.

    :param pipeline_id: the id recorded in the document (default: the DAG id). Templated.
    :param output_path: also write the JSON document here (a local path or an object-storage URI).
        Templated.
    :param trigger_rule: defaults to ``all_done`` so the report runs after failures too.
    :param fail_when_pipeline_failed: after writing the report, fail this task when a stage task failed,
        so the run is marked failed (a report that always succeeds would turn every run green, failed
        loads included). The document is still pushed to XCom. The failing stage has already alerted,
        so the reference DAG gives the report no failure callback of its own.
    """

    template_fields: Sequence[str] = ("pipeline_id", "output_path")
    ui_color = "#eaeded"
    stage = "report"

    def __init__(
        self,
        *,
        pipeline_id: str | None = None,
        output_path: str | None = None,
        trigger_rule: str = "all_done",
        fail_when_pipeline_failed: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(trigger_rule=trigger_rule, **kwargs)
        self.pipeline_id = pipeline_id
        self.output_path = output_path
        self.fail_when_pipeline_failed = fail_when_pipeline_failed

    def execute(self, context: Context) -> dict[str, Any]:
        ti, dag_run, dag = context["ti"], context["dag_run"], context["dag"]
        raw_states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        states = merge_states(raw_states, dag.task_ids)
        order = pipeline_order({t.task_id: set(t.upstream_task_ids) for t in dag.tasks})
        outcomes = [_outcome(context, task_id, states) for task_id in order if task_id != self.task_id]
        from airflow_agent_provider.operators._common import data_interval

        state = build_state(
            outcomes,
            pipeline_id=self.pipeline_id or ti.dag_id,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            started_at=getattr(dag_run, "start_date", None),
            data_interval=data_interval(context),
            logical_date=context.get("logical_date"),
        )
        for line in format_table(state):
            self.log.info("%s", line)
        document = state.model_dump(mode="json")
        if self.output_path:
            write_document(self.output_path, document)
            self.log.info("Pipeline report written to %s", self.output_path)
        if self.fail_when_pipeline_failed and state.status == "failed":
            ti.xcom_push(key="return_value", value=document)
            raise PipelineFailed(f"pipeline {state.pipeline_id} failed: " + "; ".join(state.errors[:5]))
        return document


def _outcome(context: Context, task_id: str, states: Mapping[str, str]) -> TaskOutcome:
    """One task's state, return values (all map indexes) and ``decision`` XComs."""
    ti = context["ti"]
    return TaskOutcome.parse(
        task_id,
        states.get(task_id),
        stage_of(context["dag"].get_task(task_id)),
        ti.xcom_pull(task_ids=[task_id], key="return_value") or [],
        ti.xcom_pull(task_ids=[task_id], key=DECISION_KEY) or [],
    )


def pipeline_order(upstream: Mapping[str, set[str]]) -> list[str]:
    """Task ids in run order: each after its upstream tasks, ties kept in declaration order."""
    done: list[str] = []
    pending = dict(upstream)
    while pending:
        ready = [t for t, ups in pending.items() if not (ups - set(done))] or [next(iter(pending))]
        for task_id in ready:
            done.append(task_id)
            del pending[task_id]
    return done


def merge_states(raw: Mapping[str, Any], task_ids: Iterable[str]) -> dict[str, str]:
    """Map ``get_task_states`` keys (``task`` or ``task_<map index>``) to one state per task id."""
    merged: dict[str, str] = {}
    for task_id in task_ids:
        if raw.get(task_id) is not None:
            merged[task_id] = str(raw[task_id])
            continue
        prefix = f"{task_id}_"
        mapped = [str(s) for k, s in raw.items() if s and k.startswith(prefix) and k[len(prefix) :].isdigit()]
        if mapped:
            merged[task_id] = worst_state(mapped)
    return merged


def worst_state(states: Sequence[str]) -> str:
    """The state that matters most among a mapped task's instances (a failure wins over success)."""
    for state in _STATE_RANK:
        if state in states:
            return state
    return states[0]


def build_state(
    outcomes: Sequence[TaskOutcome],
    *,
    pipeline_id: str,
    dag_id: str,
    run_id: str,
    started_at: datetime | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    logical_date: datetime | None = None,
) -> PipelineState:
    """The pipeline-state document of a run from what each task left behind.

    ``started_at`` is the earliest stage start, else the given time (the DAG run's start).
    ``data_interval`` is the data the run processed (``[start, end)``), ``logical_date`` its logical date.
    """
    from airflow_agent_provider.contracts import PipelineState, Usage

    stages = {o.task_id: summarize(o) for o in outcomes}
    results = [r for o in outcomes for r in o.results]
    decisions = [d for o in outcomes for d in o.decisions]
    starts = [s.started_at for s in stages.values() if s.started_at is not None]
    return PipelineState(
        pipeline_id=pipeline_id,
        dag_id=dag_id,
        run_id=run_id,
        logical_date=logical_date,
        data_interval_start=data_interval[0] if data_interval else None,
        data_interval_end=data_interval[1] if data_interval else None,
        started_at=min(starts) if starts else started_at,
        finished_at=datetime.now(timezone.utc),
        status=_pipeline_status(outcomes, stages),
        stages=stages,
        decisions=decisions,
        usage=sum((r.usage for r in results), Usage()) + sum((d.usage for d in decisions), Usage()),
        rows_loaded=sum(_rows(r) for r in results if r.stage == "load"),
        errors=[e for o in outcomes for e in _errors(o, stages[o.task_id])],
        warnings=_warnings_once(outcomes),
    )


def _warnings_once(outcomes: Sequence[TaskOutcome]) -> list[str]:
    """Each distinct warning once, under the first task that gave it (a re-validation repeats its validation's)."""
    tasks: dict[str, list[str]] = {}
    for outcome in outcomes:
        for result in outcome.results:
            for warning in result.warnings:
                seen = tasks.setdefault(warning, [])
                if outcome.task_id not in seen:
                    seen.append(outcome.task_id)
    return [
        f"{ids[0]}: {warning}" + (f" (also {', '.join(ids[1:])})" if len(ids) > 1 else "")
        for warning, ids in tasks.items()
    ]


def summarize(outcome: TaskOutcome) -> StageSummary:
    """One task's line in the document; a task without a stage result reports its Airflow state."""
    from airflow_agent_provider.contracts import StageSummary, Usage

    results = outcome.results
    if not results:
        stage = outcome.stage or ("branch" if outcome.decisions else "task")
        return StageSummary(
            task_id=outcome.task_id, stage=stage, status=outcome.state or "unknown", output_bytes=outcome.output_bytes
        )
    issues = [issue for r in results for issue in r.issues]
    starts = [r.started_at for r in results if r.started_at is not None]
    counts = [row_counts(r) for r in results]
    rows_out = sum(out for _, out, _ in counts)
    return StageSummary(
        task_id=outcome.task_id,
        stage=results[0].stage,
        status=_stage_status(results, outcome.state),
        duration_s=max(r.duration_s for r in results),
        started_at=min(starts) if starts else None,
        rows=rows_out,
        rows_in=_total(rows_in for rows_in, _, _ in counts),
        rows_out=rows_out,
        rows_quarantined=_total(quarantined for _, _, quarantined in counts),
        issues=len(issues),
        top_issues=[issue.summary() for issue in issues[:TOP_ISSUES]],
        usage=sum((r.usage for r in results), Usage()),
        output=_compact_output(results),
        output_bytes=outcome.output_bytes,
    )


def _stage_status(results: Sequence[StageResult], state: str | None) -> str:
    statuses = [r.status for r in results]
    for status in ("error", "fail"):
        if status in statuses:
            return status
    return "failed" if state in _FAILED_STATES else statuses[0]


def _rows(result: StageResult) -> int:
    return row_counts(result)[1]


def row_counts(result: StageResult) -> tuple[int | None, int, int | None]:
    """``(rows in, rows out, rows quarantined)`` of one stage result; None where the stage does not say.

    Rows out are a load's rows loaded, else the rows of the datasets the stage passes on: quarantined
    rows (``quarantine_datasets``, or the names in a remediation's ``rows_quarantined``) are not among them.
    """
    metrics = result.metrics
    taken = metrics.get("rows_quarantined")
    set_aside = set(metrics.get("quarantine_datasets") or [])
    if isinstance(taken, Mapping):
        set_aside |= set(taken)
        quarantined: int | None = sum(int(v or 0) for v in taken.values())
    else:
        quarantined = None if taken is None else int(taken)
    if result.stage == "load":
        rows_out = int(metrics.get("rows_loaded") or 0)
    else:
        rows_out = sum(ref.row_count for name, ref in result.datasets.items() if name not in set_aside)
    rows_in = metrics.get("rows_before")
    return (None if rows_in is None else int(rows_in)), rows_out, quarantined


def _total(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _compact_output(results: Sequence[StageResult]) -> dict[str, Any]:
    """Row counts per dataset and the stage's metrics (one result) or per-instance metrics (mapped)."""
    datasets = {name: ref.row_count for r in results for name, ref in r.datasets.items()}
    if len(results) == 1:
        return {"datasets": datasets, "metrics": results[0].metrics}
    rows_loaded = sum(int(r.metrics.get("rows_loaded") or 0) for r in results)
    return {"datasets": datasets, "metrics": {"rows_loaded": rows_loaded, "instances": [r.metrics for r in results]}}


def _errors(outcome: TaskOutcome, summary: StageSummary) -> list[str]:
    errors = [f"{outcome.task_id}: {e}" for r in outcome.results for e in r.errors]
    if outcome.state in _FAILED_STATES and not errors:
        errors.append(f"{outcome.task_id}: task {outcome.state} (status {summary.status})")
    return errors


def _pipeline_status(outcomes: Sequence[TaskOutcome], stages: Mapping[str, StageSummary]) -> PipelineStatus:
    """``failed`` when a task failed; ``partial`` when a check failed or a load did not run; else success."""
    if any(o.state in _FAILED_STATES for o in outcomes):
        return "failed"
    checks_failed = any(s.status in ("fail", "error") for s in stages.values())
    load_missed = any(o.stage == "load" and o.state not in (None, "success") for o in outcomes)
    return "partial" if checks_failed or load_missed else "success"


def format_table(state: PipelineState) -> list[str]:
    """A compact text table of the document, one line per stage, for the task log."""
    interval = ""
    if state.data_interval_start is not None and state.data_interval_end is not None:
        interval = f" (data interval {interval_text(state.data_interval_start, state.data_interval_end)})"
    lines = [
        f"Pipeline {state.pipeline_id} run {state.run_id}{interval}: {state.status}, {state.rows_loaded} row(s) "
        f"loaded, {state.usage.model_calls} model call(s), ${state.usage.cost_usd:.4f}",
        f"{'task':<28} {'stage':<10} {'status':<16} {'rows in':>9} {'rows out':>9} {'quarantined':>11} "
        f"{'issues':>6} {'seconds':>8}",
    ]
    for summary in state.stages.values():
        rows_in, rows_out, quarantined = (
            "" if value is None else str(value) for value in (summary.rows_in, summary.rows, summary.rows_quarantined)
        )
        seconds = "" if summary.duration_s is None else f"{summary.duration_s:.2f}"
        lines.append(
            f"{summary.task_id:<28} {summary.stage:<10} {summary.status:<16} {rows_in:>9} {rows_out:>9} "
            f"{quarantined:>11} {summary.issues:>6} {seconds:>8}"
        )
    for decision in state.decisions:
        how = [f"fallback: {decision.fallback_reason}"] if decision.fallback_used else []
        how += decision.notes()
        lines.append(f"route → {decision.route}" + (f" ({'; '.join(how)})" if how else ""))
    return lines


def interval_text(start: datetime, end: datetime) -> str:
    """``[start, end)`` as people read it: ISO 8601 times, end excluded."""
    return f"{start.isoformat()} to {end.isoformat()} (end excluded)"


def write_document(path: str, document: Mapping[str, Any]) -> None:
    """Write the JSON document to a local path or, for a URI, through Airflow's ObjectStoragePath."""
    text = json.dumps(document, indent=2)
    if "://" in path and not path.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        ObjectStoragePath(path).write_text(text)
        return
    local = Path(path.removeprefix("file://"))
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text, encoding="utf-8")
