"""A DAG that only has a report task: the UI plugin test seeds 30 days of its history through the REST API.

It stays paused (``dags_are_paused_at_creation``), so the scheduler never runs the seeded runs; each gets
a pipeline-state document as its ``report`` XCom and a final state, as a 30-day backfill leaves them.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_agent_provider.operators import PipelineReportOperator

with DAG(
    dag_id="ui_history",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
):
    PipelineReportOperator(task_id="report")
