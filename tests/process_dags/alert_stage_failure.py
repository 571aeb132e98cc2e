"""A DAG whose load stage fails for good after one retry, with a validation issue and a route on record.

The alert test runs it under a real scheduler; the notifier tests run it with ``dag.test()``.
Connections ``alerts_webhook`` and ``alerts_smtp`` come from the environment of the test.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_agent_provider.notifiers import StageFailureNotifier
from airflow_agent_provider.operators import StageOperator

ISSUES = [
    {"type": "null_rate_exceeded", "column": "user_id", "dataset": "events", "affected_rows": 12},
    {"type": "in_list", "column": "event_type", "dataset": "events", "affected_rows": 3},
]


class ValidateOperator(StageOperator):
    """Stands in for a validation that found issues but let the run go on."""

    stage = "validate"

    def execute(self, context: Any) -> dict[str, Any]:
        return {"stage": "validate", "status": "fail", "task_id": self.task_id, "issues": ISSUES}


class RouteOperator(StageOperator):
    """Records a routing decision the way the remediation branch does (XCom key ``decision``)."""

    stage = "branch"

    def execute(self, context: Any) -> None:
        decision = {"route": "quarantine_rows", "rationale": "12 rows without user id", "fallback_used": False}
        context["ti"].xcom_push(key="decision", value=decision)


class LoadOperator(StageOperator):
    """A load that always fails, and names a connection URI with a password in its error."""

    stage = "load"

    def execute(self, context: Any) -> None:
        raise RuntimeError("could not load into postgresql://loader:s3cret-pw@warehouse:5432/dw: relation is locked")


notifier = StageFailureNotifier(
    webhook_conn_id="alerts_webhook",
    email_to=["oncall@example.com"],
    smtp_conn_id="alerts_smtp",
)

with DAG(
    dag_id="alert_stage_failure",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=1),
        "on_failure_callback": notifier,
    },
):
    ValidateOperator(task_id="validate_events") >> RouteOperator(task_id="route") >> LoadOperator(task_id="load")
