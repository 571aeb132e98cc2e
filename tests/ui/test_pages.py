"""The run page and the DAG page rendered from fixture REST answers (no server, no browser)."""

from __future__ import annotations

import re
import time

import pytest

from airflow_agent_provider.ui.render import dag_page, run_page
from airflow_agent_provider.ui.views import build_history, build_run_view
from tests.ui import fixtures
from tests.ui.fixtures import DAG_ID


def _run_view(who: str = "claude"):  # type: ignore[no-untyped-def]
    run = fixtures.bad_run(who)
    return build_run_view(run["dag_run"], fixtures.tasks(), run["tis"], run["xcoms"], ui_base="/airflow")


def _row(html: str, task_id: str) -> str:
    match = re.search(rf'<tr data-task="{task_id}">(.*?)</tr>', html)
    assert match, f"no row for {task_id}"
    return match.group(1)


class TestRunView:
    def test_stages_in_run_order_without_the_report(self) -> None:
        view = _run_view()

        assert [s.task_id for s in view.stages] == [
            "extract_events", "extract_users", "validate_events", "validate_users", "route", "quarantine", "abort",
            "transform", "load",
        ]  # fmt: skip

    def test_rows_in_and_out_per_stage(self) -> None:
        rows = {s.task_id: (s.rows_in, s.rows_out) for s in _run_view().stages}

        assert rows["extract_events"] == (None, 1000)
        assert rows["validate_events"] == (1000, 1000)
        assert rows["quarantine"] == (1000, 988)
        assert rows["transform"] == (988, 48)
        assert rows["load"] == (48, 48)

    def test_tokens_and_cost_per_stage_and_in_total(self) -> None:
        view = _run_view()
        usage = {s.task_id: s.usage for s in view.stages}

        assert usage["validate_events"].cost_usd == pytest.approx(0.0066)
        assert usage["route"].cost_usd == pytest.approx(0.0132)
        assert usage["route"].input_tokens == 1800
        assert view.usage.cost_usd == pytest.approx(0.0198)
        assert view.usage.model_calls == 2

    def test_quarantined_rows_with_rule_and_table(self) -> None:
        [q] = _run_view().quarantined

        assert (q.task_id, q.rows, q.table, q.by_rule) == (
            "quarantine",
            12,
            "events_quarantine",
            {"user_id is_null": 12},
        )

    def test_a_remediation_counts_its_quarantined_rows_per_target(self) -> None:
        run = fixtures.bad_run()
        [fixed] = run["xcoms"][("quarantine", "return_value")]
        fixed.update(stage="remediate", metrics={"rows_before": 1000, "rows_quarantined": {"events_rejects": 3}})
        view = build_run_view(run["dag_run"], fixtures.tasks(), run["tis"], run["xcoms"], ui_base="/airflow")

        [q] = view.quarantined
        assert (q.task_id, q.rows) == ("quarantine", 3)
        table = re.search(r"<table id=quarantine>(.*?)</table>", run_page(view, dag_url="/dag"), re.S)
        assert table and ">3<" in table.group(1)


class TestRunPage:
    def test_claude_route_with_rationale_and_confidence(self) -> None:
        html = run_page(_run_view("claude"), dag_url="/dag")

        route = re.search(r'<div class="route claude" id="route">(.*?)</div>', html, re.S)
        assert route
        assert "Route <b>quarantine</b>" in route.group(1)
        assert "Claude (claude-sonnet-4-5)" in route.group(1)
        assert "confidence 86%" in route.group(1)
        assert "12 events have no user_id" in route.group(1)

    def test_fallback_route_says_why(self) -> None:
        html = run_page(_run_view("fallback"), dag_url="/dag")

        assert 'class="route fallback"' in html
        assert "Why the fallback: Claude unreachable after 3 attempts (HTTP 529 overloaded)" in html

    def test_person_route_names_who_approved(self) -> None:
        html = run_page(_run_view("person"), dag_url="/dag")

        assert 'data-decider="person">approved by maria<' in html
        assert "Claude proposed quarantine" in html

    def test_stage_rows_show_duration_rows_tokens_cost_and_log_link(self) -> None:
        html = run_page(_run_view(), dag_url="/dag")

        route = _row(html, "route")
        assert "1,800 in / 240 out" in route and "$0.0132" in route
        quarantine = _row(html, "quarantine")
        assert ">1.50 s<" in quarantine and ">1,000<" in quarantine and ">988<" in quarantine
        assert 'href="/airflow/dags/daily_user_engagement/runs/manual__bad/tasks/quarantine"' in quarantine
        assert 'target="_top"' in quarantine
        assert "$0.0198" in html  # the total row

    def test_issue_samples_are_shown_escaped(self) -> None:
        html = run_page(_run_view(), dag_url="/dag")

        issues = re.search(r"<table id=issues>(.*?)</table>", html, re.S)
        assert issues
        assert "null_rate_exceeded" in issues.group(1) and "events.user_id" in issues.group(1)
        assert "&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;" in issues.group(1)
        assert "<script>alert(1)" not in html

    def test_timeline_draws_a_bar_per_started_stage(self) -> None:
        html = run_page(_run_view(), dag_url="/dag")

        timeline = re.search(r'<svg id="timeline".*?</svg>', html, re.S)
        assert timeline
        assert timeline.group(0).count("<rect") == 8  # every stage but the skipped abort
        assert "quarantine: 1.50 s" in timeline.group(0)

    def test_quarantine_table(self) -> None:
        html = run_page(_run_view(), dag_url="/dag")

        table = re.search(r"<table id=quarantine>(.*?)</table>", html, re.S)
        assert table and "events_quarantine" in table.group(1) and "user_id is_null: 12" in table.group(1)


class TestDagPage:
    def test_history_oldest_first_with_failed_days_marked(self) -> None:
        runs, reports = fixtures.history(30)

        points = build_history(runs, reports, run_tab="agent-pipeline-run")

        assert len(points) == 30
        assert [p.day for p in points] == sorted(p.day for p in points)
        assert [p.failed for p in points].count(True) == 4
        first = points[0]
        assert (first.rows_loaded, first.failing_checks, first.route, first.decider) == (40, 2, "quarantine", "claude")
        assert first.run_url.endswith("/plugin/agent-pipeline-run")

    def test_chart_has_a_bar_per_day_and_marks_each_failed_day(self) -> None:
        runs, reports = fixtures.history(30)

        html = dag_page(DAG_ID, build_history(runs, reports))

        chart = re.search(r'<svg id="history".*?</svg>', html, re.S)
        assert chart
        assert chart.group(0).count('<g class="day') == 30
        assert chart.group(0).count('<g class="day failed"') == 4
        assert "<polyline" in chart.group(0)  # the model cost line
        assert "route quarantine" in html  # the route legend
        assert "route quarantine (claude)" in chart.group(0)

    def test_a_run_without_report_still_shows_its_state(self) -> None:
        runs, _ = fixtures.history(3)

        points = build_history(runs, {})

        assert [(p.rows_loaded, p.route) for p in points] == [(None, None)] * 3
        assert "No runs yet" in dag_page(DAG_ID, [])

    def test_thirty_days_render_well_under_a_second(self) -> None:
        runs, reports = fixtures.history(30)

        started = time.perf_counter()
        html = dag_page(DAG_ID, build_history(runs, reports))
        elapsed = time.perf_counter() - started

        assert len(html) > 10_000
        assert elapsed < 0.2, f"rendering 30 days took {elapsed:.3f}s"
