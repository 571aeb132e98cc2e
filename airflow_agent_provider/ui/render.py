"""HTML for the run page and the DAG page: server-side, CSS inlined, charts as inline SVG (no JS, no CDN).

Every value from a run (task ids, issue samples, Claude's rationale) is escaped: samples are data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from html import escape
from importlib.resources import files

from airflow_agent_provider.contracts import Issue, RouteDecision, Usage
from airflow_agent_provider.ui.views import HistoryPoint, RunView, StageRow, decided_by

ROUTE_COLORS = ("#0c8599", "#e8590c", "#c2255c", "#5c940d", "#862e9c", "#495057", "#e67700")
# A link inside Airflow's iframe (sandboxed, no top navigation) opens the Airflow page around it.
_TOP_LINKS = (
    "<script>document.addEventListener('click',function(e){var a=e.target.closest('a[target=_top]');"
    "if(!a||window.top===window)return;e.preventDefault();try{var t=window.top.document.createElement('a');"
    "t.href=a.href;window.top.document.body.appendChild(t);t.click();t.remove();}catch(x){location.href=a.href;}});"
    "</script>"
)


@cache
def stylesheet() -> str:
    return files("airflow_agent_provider.ui").joinpath("static/pipeline.css").read_text(encoding="utf-8")


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{stylesheet()}</style></head>'
        f"<body>{body}{_TOP_LINKS}</body></html>"
    )


def error_page(status: int, message: str) -> str:
    return page(f"{status}", f'<h1>{status}</h1><p class="err">{escape(message)}</p>')


def _pill(state: str) -> str:
    return f'<span class="pill s-{escape(state)}">{escape(state)}</span>'


def _num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} s" if value < 60 else f"{int(value // 60)} min {value % 60:.0f} s"


def _cost(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _card(key: str, value: str) -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{value}</div></div>'


def _tokens(usage: Usage) -> str:
    if not usage.model_calls and not usage.input_tokens:
        return "—"
    return f"{usage.total_input_tokens:,} in / {usage.output_tokens:,} out"


# ---------------------------------------------------------------- run page


def run_page(view: RunView, dag_url: str) -> str:
    total = (view.ended_at - view.started_at).total_seconds() if view.started_at and view.ended_at else None
    cards = "".join(
        [
            _card("Run state", _pill(view.state)),
            _card("Pipeline", _pill(view.status)),
            _card("Logical date", escape(view.logical_date.date().isoformat()) if view.logical_date else "none"),
            _card("Duration", _secs(total)),
            _card("Rows loaded", _num(view.rows_loaded)),
            _card("Model calls", _num(view.usage.model_calls)),
            _card("Tokens", _tokens(view.usage)),
            _card("Model cost", _cost(view.usage.cost_usd)),
        ]
    )
    body = [
        f"<h1>{escape(view.dag_id)} · {escape(view.run_id)}</h1>",
        f'<div class="sub">started {_when(view.started_at)} · '
        f'<a href="{escape(dag_url)}">history of this DAG</a></div>',
        f'<div class="cards">{cards}</div>',
        "<h2>Route</h2>",
        _route(view.route),
        "<h2>Timeline</h2>",
        timeline_svg(view),
        "<h2>Stages</h2>",
        _stage_table(view.stages, view.usage),
        "<h2>Issues</h2>",
        _issues(view.stages),
        "<h2>Quarantined rows</h2>",
        _quarantine(view),
        _messages(view),
    ]
    return page(f"{view.dag_id} {view.run_id}", "".join(body))


def _route(decision: RouteDecision | None) -> str:
    if decision is None:
        return '<p class="muted">No routing decision in this run (the route task has not run or was skipped).</p>'
    who = decided_by(decision)
    lines = [f'<div class="route {who.kind}" id="route">Route <b>{escape(decision.route)}</b> — ']
    lines.append(f'<span class="who" data-decider="{who.kind}">{escape(who.label)}</span>')
    if who.kind == "claude":
        lines.append(f", confidence {decision.confidence:.0%}")
    lines.append(f' <span class="muted">· options: {escape(", ".join(decision.options) or "—")}</span>')
    if who.kind == "fallback":
        lines.append(f"<q>Why the fallback: {escape(who.detail)}</q>")
    elif who.detail:
        lines.append(f"<q>{escape(who.detail)}</q>")
    if decision.usage.model_calls:
        lines.append(f'<div class="muted">{_tokens(decision.usage)} tokens, {_cost(decision.usage.cost_usd)}</div>')
    return "".join(lines) + "</div>"


def _stage_table(stages: Sequence[StageRow], total: Usage) -> str:
    head = (
        "<tr><th>Task</th><th>Stage</th><th>State</th><th>Start</th><th class=n>Duration</th><th class=n>Rows in</th>"
        "<th class=n>Rows out</th><th class=n>Issues</th><th class=n>Tokens</th><th class=n>Cost</th><th>Log</th></tr>"
    )
    rows = []
    for s in stages:
        state = _pill(s.state) + (f" {_pill(s.status)}" if s.status not in (s.state, "unknown") else "")
        tries = f' <span class="muted">try {s.tries}</span>' if s.tries > 1 else ""
        cost = _cost(s.usage.cost_usd) if s.usage.model_calls else "—"
        mapped = f' <span class="muted">×{s.instances}</span>' if s.instances > 1 else ""
        rows.append(
            f'<tr data-task="{escape(s.task_id)}"><td>{escape(s.task_id)}{mapped}</td><td>{escape(s.stage)}</td>'
            f"<td>{state}{tries}</td><td>{s.started_at.strftime('%H:%M:%S') if s.started_at else '—'}</td>"
            f"<td class=n>{_secs(s.duration_s)}</td><td class=n>{_num(s.rows_in)}</td>"
            f"<td class=n>{_num(s.rows_out)}</td><td class=n>{len(s.issues) or ''}</td>"
            f"<td class=n>{_tokens(s.usage)}</td><td class=n>{cost}</td>"
            f'<td><a class="log" target="_top" href="{escape(s.log_url)}">log</a></td></tr>'
        )
    foot = (
        f'<tr class="total"><th colspan=8>Total</th><th class=n>{_tokens(total)}</th>'
        f"<th class=n>{_cost(total.cost_usd)}</th><th></th></tr>"
    )
    return f"<table id=stages>{head}{''.join(rows)}{foot}</table>"


def _issue_row(task_id: str, issue: Issue) -> str:
    samples = "".join(f'<span class="sample">{escape(repr(v))}</span>' for v in issue.sample) or "—"
    where = ".".join(x for x in (issue.dataset, issue.column) if x) or "*"
    return (
        f"<tr><td>{escape(task_id)}</td><td>{escape(issue.type)}</td><td><code>{escape(where)}</code></td>"
        f"<td class=n>{_num(issue.affected_rows)}</td><td>{escape(issue.summary())}</td><td>{samples}</td></tr>"
    )


def _issues(stages: Iterable[StageRow]) -> str:
    rows = [_issue_row(s.task_id, issue) for s in stages for issue in s.issues]
    if not rows:
        return '<p class="muted">No issues: every check passed.</p>'
    head = (
        "<tr><th>Task</th><th>Type</th><th>Where</th><th class=n>Rows</th><th>Finding</th><th>Sample values</th></tr>"
    )
    return f"<table id=issues>{head}{''.join(rows)}</table>"


def _quarantine(view: RunView) -> str:
    if not view.quarantined:
        return '<p class="muted">No rows quarantined.</p>'
    rows = []
    for q in view.quarantined:
        rules = ", ".join(f"{escape(rule)}: {count:,}" for rule, count in q.by_rule.items()) or "—"
        rows.append(
            f"<tr><td>{escape(q.task_id)}</td><td class=n>{q.rows:,}</td><td>{rules}</td>"
            f"<td><code>{escape(q.table or '—')}</code></td><td class=n>{_num(q.rows_loaded)}</td></tr>"
        )
    head = "<tr><th>Task</th><th class=n>Rows</th><th>By rule</th><th>Table</th><th class=n>Rows written</th></tr>"
    return f"<table id=quarantine>{head}{''.join(rows)}</table>"


def _messages(view: RunView) -> str:
    items = [f'<li class="err">{escape(e)}</li>' for e in view.errors]
    items += [f"<li>{escape(w)}</li>" for w in view.warnings]
    return f"<h2>Errors and warnings</h2><ul>{''.join(items)}</ul>" if items else ""


def timeline_svg(view: RunView, width: int = 960) -> str:
    """Each stage as a bar from its start to its end, on one time axis from the run's start."""
    timed = [s for s in view.stages if s.started_at is not None]
    if not timed:
        return '<p class="muted">No stage has started yet.</p>'
    origin = min(s.started_at for s in timed if s.started_at is not None)
    ends = [s.ended_at or s.started_at for s in timed]
    span = max([(e - origin).total_seconds() for e in ends if e is not None] + [0.001])
    label_w, row_h, chart_w = 170, 20, width - 170 - 70
    parts = [f'<svg id="timeline" width="{width}" height="{len(timed) * row_h + 24}" role="img">']
    for i, s in enumerate(timed):
        start = ((s.started_at - origin).total_seconds() if s.started_at else 0) / span
        end_at = s.ended_at or s.started_at
        stop = ((end_at - origin).total_seconds() if end_at else 0) / span
        x, w, y = label_w + start * chart_w, max((stop - start) * chart_w, 2), i * row_h + 4
        color = {"success": "var(--ok)", "failed": "var(--fail)", "upstream_failed": "var(--fail)"}.get(
            s.state, "var(--warn)"
        )
        parts.append(
            f'<text x="0" y="{y + 12}">{escape(s.task_id)}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" rx="2" fill="{color}">'
            f"<title>{escape(s.task_id)}: {_secs(s.duration_s)}</title></rect>"
            f'<text x="{x + w + 4:.1f}" y="{y + 12}" class="muted">{_secs(s.duration_s)}</text>'
        )
    axis_y = len(timed) * row_h + 16
    parts.append(f'<text x="{label_w}" y="{axis_y}">0 s</text>')
    parts.append(f'<text x="{label_w + chart_w}" y="{axis_y}" text-anchor="end">{_secs(span)}</text></svg>')
    return "".join(parts)


# ---------------------------------------------------------------- DAG page


def dag_page(dag_id: str, points: Sequence[HistoryPoint]) -> str:
    failed = sum(p.failed for p in points)
    cost = sum(p.cost_usd or 0.0 for p in points)
    rows = sum(p.rows_loaded or 0 for p in points)
    cards = "".join(
        [
            _card("Runs", _num(len(points))),
            _card("Failed days", f'<span class="{"err" if failed else ""}">{failed}</span>'),
            _card("Rows loaded", _num(rows)),
            _card("Model cost", _cost(cost)),
        ]
    )
    body = [
        f"<h1>{escape(dag_id)} · history</h1>",
        '<div class="sub">One point per run, by logical date: rows loaded, failing checks, the route and the model '
        "cost.</div>",
        f'<div class="cards">{cards}</div>',
        history_svg(points),
        "<h2>Runs</h2>",
        _history_table(points),
    ]
    return page(f"{dag_id} history", "".join(body))


def _route_colors(points: Sequence[HistoryPoint]) -> dict[str, str]:
    routes = sorted({p.route for p in points if p.route})
    return {route: ROUTE_COLORS[i % len(ROUTE_COLORS)] for i, route in enumerate(routes)}


def history_svg(points: Sequence[HistoryPoint], width: int = 960, height: int = 300) -> str:
    """Bars of rows loaded per day, a line of model cost, failing checks above the bars, failed days in red."""
    if not points:
        return '<p class="muted">No runs yet.</p>'
    left, right, top, bottom = 56, 90, 22, 78
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / len(points)
    max_rows = max([p.rows_loaded or 0 for p in points] + [1])
    max_cost = max([p.cost_usd or 0.0 for p in points] + [0.0]) or 1.0
    colors = _route_colors(points)
    parts = [f'<svg id="history" width="{width}" height="{height}" role="img" aria-label="run history">']
    parts += _axes(left, top, plot_w=plot_w, plot_h=plot_h, max_rows=max_rows, max_cost=max_cost)
    cost_line = []
    label_every = max(1, len(points) // 15)
    for i, p in enumerate(points):
        x = left + i * step
        parts += _day(
            p, i, x=x, step=step, top=top, plot_h=plot_h, max_rows=max_rows, colors=colors, label_every=label_every
        )
        if p.cost_usd is not None:
            cost_line.append((x + step / 2, top + plot_h - (p.cost_usd / max_cost) * plot_h))
    if cost_line:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in cost_line)
        parts.append(f'<polyline points="{path}" fill="none" stroke="var(--cost)" stroke-width="1.5"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="var(--cost)"/>' for x, y in cost_line]
    parts.append("</svg>")
    return "".join(parts) + _legend(colors)


def _axes(left: int, top: int, *, plot_w: float, plot_h: float, max_rows: int, max_cost: float) -> list[str]:
    base = top + plot_h
    parts = [
        f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{max_rows:,}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end">0</text>',
        f'<text x="4" y="{top - 8}">rows loaded</text>',
        f'<text x="{left - 6}" y="{base + 12}" text-anchor="end">route</text>',
        f'<text x="{left - 6}" y="{base + 26}" text-anchor="end">checks</text>',
        f'<text x="{left + plot_w + 6}" y="{top + 4}">${max_cost:.4f}</text>',
        f'<text x="{left + plot_w + 6}" y="{top - 8}">model cost</text>',
    ]
    parts.append(f'<line class="grid" x1="{left}" y1="{top}" x2="{left + plot_w}" y2="{top}"/>')
    return parts


def _day(
    p: HistoryPoint,
    i: int,
    *,
    x: float,
    step: float,
    top: int,
    plot_h: float,
    max_rows: int,
    colors: dict[str, str],
    label_every: int,
) -> list[str]:
    base, bar_w = top + plot_h, max(step * 0.62, 1.5)
    bar_x = x + (step - bar_w) / 2
    day = p.day.date().isoformat() if p.day else p.run_id
    tip = (
        f"{day} {p.state}: {_num(p.rows_loaded)} rows, {_num(p.failing_checks)} failing checks, "
        f"route {p.route or '—'} ({p.decider or '—'}), {_cost(p.cost_usd)}"
    )
    klass = "day failed" if p.failed else "day"
    parts = [f'<g class="{klass}" data-day="{escape(day)}"><title>{escape(tip)}</title>']
    if p.failed:
        parts.append(
            f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h:.1f}" fill="var(--fail)" opacity="0.12"/>'
            f'<text x="{x + step / 2:.1f}" y="{top - 6}" text-anchor="middle" style="fill:var(--fail)">✕</text>'
        )
    height = ((p.rows_loaded or 0) / max_rows) * plot_h
    fill = "var(--fail)" if p.failed else "var(--accent)"
    parts.append(
        f'<rect x="{bar_x:.1f}" y="{base - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" fill="{fill}"/>'
    )
    if p.route:
        parts.append(f'<rect x="{bar_x:.1f}" y="{base + 4}" width="{bar_w:.1f}" height="8" fill="{colors[p.route]}"/>')
    if p.failing_checks:
        cx, cy = x + step / 2, base + 22
        parts.append(
            f'<circle class="checks" cx="{cx:.1f}" cy="{cy}" r="7" fill="var(--warn)"/>'
            f'<text x="{cx:.1f}" y="{cy + 4}" text-anchor="middle" style="fill:#fff">{p.failing_checks}</text>'
        )
    if i % label_every == 0 and p.day:
        lx, ly = x + step / 2, base + 44
        parts.append(
            f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-40 {lx:.1f} {ly})">{p.day:%m-%d}</text>'
        )
    parts.append("</g>")
    return parts


def _legend(colors: dict[str, str]) -> str:
    items = [
        '<span><i style="background:var(--accent)"></i>rows loaded</span>',
        '<span><i style="background:var(--fail);opacity:.5"></i>failed day ✕</span>',
        '<span><i style="background:var(--warn);border-radius:5px"></i>failing checks</span>',
        '<span><i style="background:var(--cost)"></i>model cost</span>',
    ]
    items += [f'<span><i style="background:{c}"></i>route {escape(r)}</span>' for r, c in colors.items()]
    return f'<div class="legend">{"".join(items)}</div>'


def _history_table(points: Sequence[HistoryPoint]) -> str:
    head = (
        "<tr><th>Day</th><th>Run</th><th>State</th><th class=n>Rows loaded</th><th class=n>Failing checks</th>"
        "<th>Route</th><th>Decided by</th><th class=n>Model cost</th></tr>"
    )
    rows = [
        f'<tr class="{"failed" if p.failed else ""}"><td>{p.day.date().isoformat() if p.day else "—"}</td>'
        f'<td><a target="_top" href="{escape(p.run_url)}">{escape(p.run_id)}</a></td><td>{_pill(p.state)}</td>'
        f"<td class=n>{_num(p.rows_loaded)}</td><td class=n>{_num(p.failing_checks)}</td>"
        f"<td>{escape(p.route or '—')}</td><td>{escape(p.decider or '—')}</td><td class=n>{_cost(p.cost_usd)}</td></tr>"
        for p in reversed(points)
    ]
    return f"<table id=runs>{head}{''.join(rows)}</table>"
