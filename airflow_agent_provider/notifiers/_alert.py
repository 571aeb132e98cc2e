"""What a stage-failure alert says, read from a task's callback context, and how it is rendered.

Only the context is read (``ti``, ``task``, ``dag``, ``dag_run``, ``exception``); nothing here
templates on ``ds`` or ``logical_date``, so runs without a logical date are alerted like any other.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_agent_provider import redaction
from airflow_agent_provider.operators.base import DECISION_KEY
from airflow_agent_provider.operators.base import stage_of as operator_stage

MAX_ISSUE_LINES = 5
MAX_RATIONALE_CHARS = 200


@dataclass(frozen=True)
class StageAlert:
    """The facts of one failed task, ready to render for any channel."""

    dag_id: str
    run_id: str
    task_id: str
    stage: str | None  # None: the task is no pipeline stage (a ``@task``, an ``EmptyOperator``)
    error: str
    run_after: str = ""
    data_interval: str = ""
    try_number: int | None = None
    log_url: str = ""
    issues: list[str] = field(default_factory=list)
    decision: str = ""

    @property
    def subject(self) -> str:
        if self.stage is None:
            return f"[Airflow] task {self.task_id} failed (not a pipeline stage): {self.dag_id}.{self.task_id}"
        return f"[Airflow] {self.stage} stage failed: {self.dag_id}.{self.task_id}"

    def lines(self) -> list[tuple[str, str]]:
        """The labelled facts, in reading order, without empty ones."""
        facts = [
            ("DAG", self.dag_id),
            ("Run", self.run_id),
            ("Task", self.task_id if self.try_number is None else f"{self.task_id} (try {self.try_number})"),
            ("Stage", self.stage or f"none: {self.task_id} is not a pipeline stage"),
            ("Data interval", self.data_interval),
            ("Date", self.run_after),
            ("Error", self.error),
            ("Route", self.decision),
            ("Log", self.log_url),
        ]
        return [(label, value) for label, value in facts if value]

    def text(self) -> str:
        """Plain text: the webhook ``text`` fallback and the e-mail's text."""
        body = [self.subject, *(f"{label}: {value}" for label, value in self.lines())]
        if self.issues:
            body += ["Top issues:", *(f"  - {issue}" for issue in self.issues)]
        return "\n".join(body)

    def blocks(self) -> list[dict[str, Any]]:
        """Slack Block Kit blocks: a header, the facts, the issues."""
        facts = "\n".join(f"*{label}:* {_slack_escape(value)}" for label, value in self.lines())
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts[:3000]}},
        ]
        if self.issues:
            issues = "\n".join(f"• {_slack_escape(issue)}" for issue in self.issues)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Top issues:*\n{issues}"[:3000]}})
        return blocks

    def html(self) -> str:
        """The e-mail body: a small table of facts and the issue list, all escaped."""
        rows = "".join(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{_html_value(label, value)}</td></tr>"
            for label, value in self.lines()
        )
        issues = "".join(f"<li>{html.escape(issue)}</li>" for issue in self.issues)
        issue_block = f"<p>Top issues:</p><ul>{issues}</ul>" if issues else ""
        return f"<h3>{html.escape(self.subject)}</h3><table>{rows}</table>{issue_block}"


def build_alert(context: Mapping[str, Any], *, max_error_chars: int = 500) -> StageAlert:
    """Read the alert's facts from a task callback context (a DAG-level context works too)."""
    ti, task, dag_run = context.get("ti"), context.get("task"), context.get("dag_run")
    own_result = _pull(ti, getattr(ti, "task_id", None), "return_value")
    return StageAlert(
        dag_id=str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "")),
        run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "")),
        task_id=str(getattr(ti, "task_id", None) or "(DAG run)"),
        stage=stage_of(task, own_result),
        error=error_text(context.get("exception") or context.get("reason"), max_error_chars),
        run_after=_run_after(context),
        data_interval=_data_interval(context),
        try_number=getattr(ti, "try_number", None),
        log_url=log_url(ti),
        issues=issue_lines(_issue_sources(context, own_result)),
        decision=decision_text(_decisions(context)),
    )


def stage_of(task: Any, own_result: Any = None) -> str | None:
    """The stage a task runs: its operator's ``stage``, else its own stage result's; None for any other task."""
    if task is None:
        return "run"  # a DAG-level callback: the run failed, not one task
    stage = operator_stage(task)
    if stage is None and isinstance(own_result, Mapping) and isinstance(own_result.get("stage"), str):
        return str(own_result["stage"])
    return stage


def error_text(error: Any, max_chars: int) -> str:
    """The error as one bounded line of text, with credentials and known secrets masked."""
    if error is None:
        return "unknown error"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = " ".join(redact_secrets(text).split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def redact_secrets(text: str) -> str:
    """``redaction.redact``, then every secret Airflow's masker knows (connection passwords)."""
    text = redaction.redact(text)
    from airflow.sdk.log import redact

    return str(redact(text))


def issue_lines(results: Iterable[tuple[str, Any]]) -> list[str]:
    """The largest issues of the given ``(task_id, stage result)`` pairs, at most five lines in all."""
    found: list[tuple[int, str]] = []
    for task_id, result in results:
        for issue in _issues_of(result):
            found.append((_affected(issue), f"{task_id}: {_issue_summary(issue)}"))
    found.sort(key=lambda item: -item[0])
    lines = [line for _, line in found]
    if len(lines) <= MAX_ISSUE_LINES:
        return lines
    shown = lines[: MAX_ISSUE_LINES - 1]
    return [*shown, f"… and {len(lines) - len(shown)} more issues"]


def decision_text(decisions: Iterable[tuple[str, Any]]) -> str:
    """``task → route (fallback: reason) — rationale`` for each routing decision of the run."""
    parts = []
    for task_id, value in decisions:
        if not isinstance(value, Mapping) or not value.get("route"):
            continue
        text = f"{task_id} → {value['route']}"
        if value.get("fallback_used"):
            text += f" (fallback: {value.get('fallback_reason') or 'no reason given'})"
        notes = _decision_notes(value)
        if notes:
            text += f" ({'; '.join(notes)})"
        rationale = " ".join(str(value.get("rationale") or "").split())
        if rationale:
            text += f" — {rationale[:MAX_RATIONALE_CHARS]}"
        parts.append(text)
    return "; ".join(parts)


def _decision_notes(value: Mapping[str, Any]) -> list[str]:
    """Reused from memory, below the confidence gate, approved by a person (none for an odd record)."""
    from airflow_agent_provider.contracts import RouteDecision

    try:
        return RouteDecision.model_validate(dict(value)).notes()
    except ValueError:
        return []


def log_url(ti: Any) -> str:
    """The task's log page: ``ti.log_url``, else built from ``[api] base_url``."""
    url = getattr(ti, "log_url", None) if ti is not None else None
    if url:
        return str(url)
    if ti is None:
        return ""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{ti.dag_id}/runs/{quote(str(ti.run_id))}/tasks/{ti.task_id}"


def _data_interval(context: Mapping[str, Any]) -> str:
    """The data the run processed, as the operators read it (the day before ``run_after`` without a logical date)."""
    if getattr(context.get("dag_run"), "run_after", None) is None and context.get("data_interval_end") is None:
        return ""
    from airflow_agent_provider.operators._common import data_interval
    from airflow_agent_provider.operators.report import interval_text

    try:
        start, end = data_interval(context)
    except (KeyError, AttributeError, TypeError):
        return ""
    return interval_text(start, end)


def _run_after(context: Mapping[str, Any]) -> str:
    """The logical date, or ``run_after`` for a manual run without one (never ``ds``: pitfall 3)."""
    logical = context.get("logical_date")
    when = logical or getattr(context.get("dag_run"), "run_after", None)
    if when is None:
        return ""
    isoformat = getattr(when, "isoformat", None)
    text = str(isoformat()) if callable(isoformat) else str(when)
    return text if logical else f"{text} (no logical date)"


def _issue_sources(context: Mapping[str, Any], own_result: Any) -> list[tuple[str, Any]]:
    """The failing task's own issues (exception, result), then its upstream validations' issues."""
    ti, task = context.get("ti"), context.get("task")
    own_id = str(getattr(ti, "task_id", ""))
    sources: list[tuple[str, Any]] = [(own_id, {"issues": getattr(context.get("exception"), "issues", None)})]
    sources.append((own_id, own_result))
    upstream = sorted(task.get_flat_relative_ids(upstream=True)) if task is not None else []
    for task_id in upstream:
        result = _pull(ti, task_id, "return_value")
        if isinstance(result, Mapping) and result.get("stage") == "validate":
            sources.append((task_id, result))
    return sources


def _decisions(context: Mapping[str, Any]) -> list[tuple[str, Any]]:
    ti, dag = context.get("ti"), context.get("dag")
    task_ids = sorted(getattr(dag, "task_ids", None) or [])
    return [(task_id, _pull(ti, task_id, DECISION_KEY)) for task_id in task_ids]


def _pull(ti: Any, task_id: str | None, key: str) -> Any:
    """One task's XCom in this run (the first map index of a mapped task); None when absent or unreadable."""
    if ti is None or task_id is None:
        return None
    try:
        value = ti.xcom_pull(task_ids=task_id, key=key)
    except Exception:  # an alert must not die on an unreadable XCom
        return None
    if isinstance(value, list) and value and not isinstance(value[0], str):
        return value[0]
    return value


def _issues_of(result: Any) -> list[Any]:
    if result is None:
        return []
    issues = result.get("issues") if isinstance(result, Mapping) else getattr(result, "issues", None)
    return list(issues or [])


def _affected(issue: Any) -> int:
    value = issue.get("affected_rows") if isinstance(issue, Mapping) else getattr(issue, "affected_rows", 0)
    return int(value or 0)


def _issue_summary(issue: Any) -> str:
    summary = getattr(issue, "summary", None)
    if callable(summary):
        return " ".join(str(summary()).split())
    if not isinstance(issue, Mapping):
        return " ".join(str(issue).split())
    if issue.get("message"):
        return " ".join(str(issue["message"]).split())
    where = f"{issue['dataset'] + '.' if issue.get('dataset') else ''}{issue.get('column') or '*'}"
    return f"{issue.get('type', 'issue')} on {where}: {issue.get('affected_rows', 0)} rows"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html_value(label: str, value: str) -> str:
    if label == "Log":
        return f"<a href='{html.escape(value, quote=True)}'>{html.escape(value)}</a>"
    return html.escape(value)
