"""StageFailureNotifier: the alert's content, its channels, and a real Airflow run without a logical date.

The channels talk to real loopback receivers (a webhook endpoint and an SMTP sink, each its own
process). The DAG run uses ``dag.test()`` on ``tests/process_dags/alert_stage_failure.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.process._procs import ROOT, Receivers, free_port

PROCESS_DAGS = ROOT / "tests" / "process_dags"
SECRET = "s3cret-pw"


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receivers]:
    recv = Receivers(tmp_path_factory.mktemp("receivers"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in recv.connections().items():
            mp.setenv(key, value)
        yield recv
    assert recv.stop() == [], "a receiver outlived its stop"


@pytest.fixture
def fresh(receivers: Receivers) -> Receivers:
    receivers.clear()
    return receivers


def _alert(**overrides: Any) -> Any:
    from airflow_agent_provider.notifiers._alert import StageAlert

    facts: dict[str, Any] = {
        "dag_id": "d",
        "run_id": "manual__x",
        "task_id": "load",
        "stage": "load",
        "error": "RuntimeError: boom",
        "issues": ["validate_events: null_rate_exceeded on events.user_id: 12 rows"],
        "decision": "route → quarantine_rows",
        "log_url": "http://127.0.0.1:8080/dags/d/runs/manual__x/tasks/load",
    }
    return StageAlert(**{**facts, **overrides})


class TestStageAlertContent:
    def test_issue_lines_keep_the_largest_and_stay_within_five_lines(self) -> None:
        from airflow_agent_provider.notifiers._alert import issue_lines

        issues = [{"type": "not_null", "column": f"c{i}", "affected_rows": i} for i in range(9)]
        lines = issue_lines([("validate_a", {"issues": issues})])
        assert len(lines) == 5
        assert lines[0] == "validate_a: not_null on c8: 8 rows"
        assert lines[-1] == "… and 5 more issues"

    def test_issue_lines_accept_issue_models_and_messages(self) -> None:
        from airflow_agent_provider.contracts import Issue
        from airflow_agent_provider.notifiers._alert import issue_lines

        issue = Issue(type="schema_mismatch", message="column age is text")
        lines = issue_lines([("v", {"issues": [issue]}), ("w", None)])
        assert lines == ["v: column age is text"]

    def test_error_hides_uri_credentials_and_is_cut(self) -> None:
        from airflow_agent_provider.notifiers._alert import error_text

        text = error_text(RuntimeError(f"cannot reach postgresql://loader:{SECRET}@db:5432/dw\n{'x' * 900}"), 120)
        assert SECRET not in text
        assert text.startswith("RuntimeError: cannot reach postgresql://***@db:5432/dw x")
        assert len(text) == 120

    def test_decision_names_route_fallback_and_rationale(self) -> None:
        from airflow_agent_provider.notifiers._alert import decision_text

        text = decision_text(
            [
                ("extract", None),
                (
                    "route",
                    {
                        "route": "escalate",
                        "fallback_used": True,
                        "fallback_reason": "model_unavailable",
                        "rationale": "no\nmodel",
                    },
                ),
            ]
        )
        assert text == "route → escalate (fallback: model_unavailable) — no model"

    def test_a_reused_a_gated_and_an_approved_decision_say_so(self) -> None:
        from airflow_agent_provider.notifiers._alert import decision_text

        reused = {"route": "quarantine_rows", "reused_from": "scheduled__2026-11-01", "approved_by": "ana"}
        gated = {
            "route": "escalate",
            "fallback_used": True,
            "fallback_reason": "low_confidence: Claude's confidence 0.55 is below min_confidence 0.70",
            "low_confidence": 0.55,
        }
        asked = {"route": "proceed", "low_confidence": 0.4, "approved_by": "ana"}
        assert decision_text([("a", reused), ("b", gated), ("c", asked)]) == (
            "a → quarantine_rows (reused from run scheduled__2026-11-01, no model call; approved by ana); "
            "b → escalate (fallback: low_confidence: Claude's confidence 0.55 is below min_confidence 0.70); "
            "c → proceed (low confidence 0.40, below the gate; approved by ana)"
        )

    def test_a_task_that_is_no_pipeline_stage_is_named_and_said_to_be_none(self) -> None:
        import pendulum
        from airflow.sdk import DAG, task

        from airflow_agent_provider.notifiers._alert import build_alert

        with DAG("d", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

            @task
            def escalate() -> None:
                raise RuntimeError("a person must look")

            op = escalate().operator
        ti = SimpleNamespace(task_id="escalate", dag_id="d", run_id="r1", log_url="http://127.0.0.1:8080/log")
        alert = build_alert({"ti": ti, "task": op, "run_id": "r1", "exception": RuntimeError("a person must look")})
        assert type(op).__name__ == "_PythonDecoratedOperator" and alert.stage is None
        assert alert.subject == "[Airflow] task escalate failed (not a pipeline stage): d.escalate"
        assert ("Stage", "none: escalate is not a pipeline stage") in alert.lines()
        assert "_PythonDecoratedOperator" not in alert.text() + alert.html()

    def test_each_operator_names_its_own_stage_mapped_or_not(self) -> None:
        import pendulum
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG

        from airflow_agent_provider.notifiers._alert import stage_of
        from airflow_agent_provider.operators import ExtractOperator, QuarantineOperator, SchemaRemediationOperator

        with DAG("d", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
            quarantine = QuarantineOperator(task_id="quarantine", validation=None)
            fix = SchemaRemediationOperator(task_id="fix", validation=None, expected_schema={})
            mapped = ExtractOperator.partial(task_id="extract").expand(sources=[[{"name": "a"}], [{"name": "b"}]])
            empty = EmptyOperator(task_id="empty")
        stages = [stage_of(op) for op in (quarantine, fix, mapped, empty)]
        assert stages == ["quarantine", "remediate", "extract", None]

    def test_dag_level_context_names_the_run(self) -> None:
        import pendulum
        from airflow.models.dagrun import DagRun

        from airflow_agent_provider.notifiers._alert import build_alert

        run = DagRun(dag_id="d", run_id="r1", run_after=pendulum.datetime(2026, 11, 20, tz="UTC"), run_type="manual")
        alert = build_alert({"dag_run": run, "run_id": "r1", "reason": "task_failure"})
        assert (alert.dag_id, alert.run_id, alert.task_id, alert.stage) == ("d", "r1", "(DAG run)", "run")
        assert alert.error == "task_failure"
        assert alert.run_after == "2026-11-20T00:00:00+00:00 (no logical date)"
        assert alert.data_interval == "2026-11-19T00:00:00+00:00 to 2026-11-20T00:00:00+00:00 (end excluded)"
        assert (alert.issues, alert.decision, alert.log_url) == ([], "", "")

    def test_the_alert_states_the_data_interval_the_run_processed(self) -> None:
        import pendulum

        from airflow_agent_provider.notifiers._alert import build_alert

        start, end = pendulum.datetime(2026, 11, 12, tz="UTC"), pendulum.datetime(2026, 11, 13, tz="UTC")
        context = {"run_id": "r", "logical_date": end, "data_interval_start": start, "data_interval_end": end}

        alert = build_alert(context)

        assert "Data interval: 2026-11-12T00:00:00+00:00 to 2026-11-13T00:00:00+00:00 (end excluded)" in alert.text()
        assert "Date: 2026-11-13T00:00:00+00:00" in alert.text()

    def test_renderings_escape_markup(self) -> None:
        alert = _alert(error="ValueError: <script>")
        assert "<script>" not in alert.html()
        assert "&lt;script&gt;" in alert.blocks()[1]["text"]["text"]
        assert "ValueError: <script>" in alert.text()


class TestWebhookConnection:
    @pytest.mark.parametrize(
        ("conn", "path"),
        [
            pytest.param(lambda port: {"host": f"http://127.0.0.1:{port}/in/T1/B2"}, "/in/T1/B2", id="host-is-url"),
            pytest.param(lambda port: {"host": "127.0.0.1", "port": port, "schema": "http"}, "/", id="host-and-port"),
        ],
    )
    def test_the_post_goes_where_http_hook_points(
        self, fresh: Receivers, monkeypatch: pytest.MonkeyPatch, conn: Any, path: str
    ) -> None:
        from airflow_agent_provider.notifiers import StageFailureNotifier

        connection = {"conn_type": "http", **conn(fresh.webhook_port)}
        monkeypatch.setenv("AIRFLOW_CONN_HOOK_ALERTS", json.dumps(connection))
        StageFailureNotifier(webhook_conn_id="hook_alerts").send_webhook(_alert())
        [hook] = fresh.hooks()
        assert (hook["path"], hook["content_type"]) == (path, "application/json")

    def test_connection_without_host_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_agent_provider.notifiers import StageFailureNotifier

        monkeypatch.setenv("AIRFLOW_CONN_NO_HOST", json.dumps({"conn_type": "http"}))
        with pytest.raises(ValueError, match="'no_host' has no host"):
            StageFailureNotifier(webhook_conn_id="no_host").send_webhook(_alert())


class TestChannels:
    def test_http_connection_gets_a_slack_shaped_post(self, fresh: Receivers) -> None:
        from airflow_agent_provider.notifiers import StageFailureNotifier

        StageFailureNotifier(webhook_conn_id="alerts_webhook").send_webhook(_alert())
        [hook] = fresh.hooks()
        body = json.loads(hook["body"])
        assert hook["path"] == "/hooks/alerts"
        assert set(body) == {"text", "blocks"}
        assert "quarantine_rows" in body["text"]

    def test_slackwebhook_connection_goes_through_the_slack_hook(
        self, fresh: Receivers, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from airflow_agent_provider.notifiers import StageFailureNotifier

        conn = {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{fresh.webhook_port}", "password": "T0/B0/XYZ"}
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(conn))
        StageFailureNotifier(webhook_conn_id="slack_alerts").send_webhook(_alert())
        [hook] = fresh.hooks()
        assert hook["path"] == "/T0/B0/XYZ"
        assert json.loads(hook["body"])["blocks"][0]["type"] == "header"

    def test_email_goes_through_the_smtp_connection(self, fresh: Receivers) -> None:
        from airflow_agent_provider.notifiers import StageFailureNotifier

        StageFailureNotifier(email_to="oncall@example.com", smtp_conn_id="alerts_smtp").send_email(_alert())
        [mail] = fresh.mails()
        assert mail["rcpt_tos"] == ["oncall@example.com"]
        assert mail["mail_from"] == "airflow@example.com"
        assert mail["subject"] == "[Airflow] load stage failed: d.load"

    def test_unreachable_webhook_error_does_not_name_the_url(self) -> None:
        import requests

        from airflow_agent_provider.notifiers.stage_failure import WebhookDeliveryError, _post_json

        port = free_port()
        with pytest.raises(WebhookDeliveryError) as err, requests.Session() as session:
            _post_json(session, f"http://127.0.0.1:{port}/T0/B0/{SECRET}", {"text": "x"}, timeout=2)
        assert SECRET not in str(err.value)
        assert f"127.0.0.1:{port}" in str(err.value)


@pytest.fixture
def process_dags_bundle(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/process_dags as a second DAG bundle, so dag.test() can serialize its DAGs."""
    from airflow.dag_processing.dagbag import DagBag

    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "process-dags", "classpath": local, "kwargs": {"path": str(PROCESS_DAGS)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(PROCESS_DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.mark.airflow
class TestNotifierInARun:
    def test_final_failure_after_a_retry_sends_one_alert_per_channel(
        self, fresh: Receivers, process_dags_bundle: Any
    ) -> None:
        dag = process_dags_bundle.get_dag("alert_stage_failure")
        dag_run = dag.test(logical_date=None)

        assert dag_run.state == "failed"
        assert dag_run.logical_date is None
        load = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "load")
        assert (load.state, load.try_number) == ("failed", 2)
        [hook], [mail] = fresh.hooks(), fresh.mails()
        text = json.loads(hook["body"])["text"]
        for body in (text, mail["body"]):
            assert "alert_stage_failure" in body
            assert dag_run.run_id in body
            assert "load" in body
            assert "RuntimeError: could not load into postgresql://***@warehouse:5432/dw" in body
            assert "validate_events: null_rate_exceeded on events.user_id: 12 rows" in body
            assert "route → quarantine_rows" in body
            assert "/dags/alert_stage_failure/runs/" in body
            assert SECRET not in body
        assert "Stage: load" in text
        assert f"Date: {dag_run.run_after.isoformat()} (no logical date)" in text
        assert "Data interval: " in text
        assert mail["subject"] == "[Airflow] load stage failed: alert_stage_failure.load"

    def test_broken_webhook_still_sends_the_mail_and_keeps_the_task_error(
        self, fresh: Receivers, process_dags_bundle: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dead = {"conn_type": "http", "host": f"http://127.0.0.1:{free_port()}/hooks/alerts"}
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_WEBHOOK", json.dumps(dead))
        dag_run = process_dags_bundle.get_dag("alert_stage_failure").test(logical_date=None)

        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert states == {"validate_events": "success", "route": "success", "load": "failed"}
        assert fresh.hooks() == []
        assert len(fresh.mails()) == 1
