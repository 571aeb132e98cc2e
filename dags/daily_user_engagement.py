"""Daily user engagement: the reference pipeline of airflow-agent-provider.

Each run covers one day (its data interval, midnight to midnight UTC):

1. extract, in parallel: the day's ``events`` (SQL on ``agent_sources_db``), the ``users`` profiles
   (paginated JSON API on ``agent_users_api``) and the ``campaigns`` file (CSV);
2. validate each dataset (schema and quality rules);
3. ``route``: every validation passed -> ``transform``; otherwise -> ``abort``, which fails with the
   issues so the run is marked failed and alerts fire;
4. ``transform``: enrich events with users and campaigns, aggregate daily metrics per user, flag
   anomalous users (events more than 3 standard deviations above that day's mean);
5. ``load``: upsert into ``user_engagement_daily`` keyed by ``(user_id, date)`` on ``agent_warehouse``
   (re-running a day gives the same table);
6. ``report``: the pipeline-state document (runs whatever happened).

Connections (``make demo`` sets them as environment variables):

- ``AIRFLOW_CONN_AGENT_SOURCES_DB='sqlite:////path/to/var/sample/events.db'``
- ``AIRFLOW_CONN_AGENT_USERS_API='{"conn_type": "http", "host": "127.0.0.1", "port": 8765}'``
- ``AIRFLOW_CONN_AGENT_WAREHOUSE='sqlite:////path/to/var/warehouse.db'``

A task that fails for good (``abort`` included) alerts through ``StageFailureNotifier`` when the
Variable ``agent_alert_webhook_conn_id`` names a Slack-compatible webhook connection.

The campaigns file is ``<sample dir>/campaigns.csv``: the Airflow Variable ``agent_sample_dir``, else
``$AGENT_PROVIDER_HOME/var/sample`` (the repository's ``var/sample`` by default). The report JSON is
written to the Variable ``agent_reports_dir``, else ``$AGENT_PROVIDER_HOME/var/reports``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from airflow_agent_provider.notifiers import StageFailureNotifier
from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    TransformOperator,
    ValidateOperator,
)

_HOME = Path(os.environ.get("AGENT_PROVIDER_HOME") or Path(__file__).resolve().parent.parent)
SAMPLE_DIR = "{{ var.value.get('agent_sample_dir', '" + str(_HOME / "var" / "sample") + "') }}"
# Alerts go to this Slack-compatible webhook connection when the Variable names one.
ALERT_WEBHOOK_CONN_ID = "{{ var.value.get('agent_alert_webhook_conn_id', '') }}"
REPORTS_DIR = "{{ var.value.get('agent_reports_dir', '" + str(_HOME / "var" / "reports") + "') }}"

# The data interval as 'YYYY-MM-DD HH:MM:SS' (UTC), also on manual runs without a logical date
# (then: the day before run_after, as the operators assume).
_START = "(data_interval_start | default(dag_run.run_after.date() - macros.timedelta(days=1)))"
_END = "(data_interval_end | default(dag_run.run_after.date()))"
INTERVAL_START = "{{ " + _START + ".strftime('%Y-%m-%d %H:%M:%S') }}"
INTERVAL_END = "{{ " + _END + ".strftime('%Y-%m-%d %H:%M:%S') }}"

EVENTS_QUERY = """
SELECT event_id, user_id, event_type, event_ts, revenue, session_id, campaign_id
FROM events
WHERE event_ts >= :interval_start AND event_ts < :interval_end
ORDER BY event_id
"""

EVENT_TYPES = ["page_view", "click", "add_to_cart", "purchase"]

ENRICHED_SQL = """
SELECT e.event_id, e.user_id, e.event_type, CAST(e.event_ts AS TIMESTAMP) AS event_ts,
       CAST(CAST(e.event_ts AS TIMESTAMP) AS DATE) AS event_date, coalesce(e.revenue, 0) AS revenue,
       e.session_id, e.campaign_id, u.country, u.plan, c.channel
FROM events AS e
LEFT JOIN users AS u ON u.user_id = e.user_id
LEFT JOIN campaigns AS c ON c.campaign_id = e.campaign_id
WHERE e.user_id IS NOT NULL
"""

DAILY_SQL = """
SELECT user_id, event_date AS date, any_value(country) AS country, any_value(plan) AS plan,
       count(*) AS events,
       count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
       count(*) FILTER (WHERE event_type = 'click') AS clicks,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_carts,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       round(sum(revenue), 2) AS revenue,
       count(DISTINCT session_id) AS sessions,
       count(campaign_id) AS campaign_events
FROM enriched
GROUP BY user_id, event_date
"""

FLAGGED_SQL = """
SELECT *,
       round(coalesce((events - avg(events) OVER day) / nullif(stddev_pop(events) OVER day, 0), 0), 3)
           AS events_zscore,
       coalesce((events - avg(events) OVER day) / nullif(stddev_pop(events) OVER day, 0) > 3, false)
           AS is_anomaly
FROM daily
WINDOW day AS (PARTITION BY date)
"""


@task.branch(task_id="route")
def route(validations: list[dict[str, Any]], ti: Any = None) -> str:
    """Proceed to ``transform`` when every validation passed, else ``abort``; the decision goes to XCom."""
    from airflow_agent_provider.contracts import RouteDecision, StageResult

    failed = [r for r in map(StageResult.from_xcom, validations) if not r.passed]
    rationale = "; ".join(f"{r.task_id}: {len(r.issues)} issue(s)" for r in failed) or "every validation passed"
    decision = RouteDecision(
        route="abort" if failed else "transform", rationale=rationale, confidence=1.0, options=["abort", "transform"]
    )
    ti.xcom_push(key="decision", value=decision.model_dump(mode="json"))
    return decision.route


@task(task_id="abort")
def abort(validations: list[dict[str, Any]]) -> None:
    """Stop the run: fail with the validation issues (no retry), so the run is failed and alerts fire."""
    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.operators import StageFailed

    issues = [i.summary() for r in map(StageResult.from_xcom, validations) for i in r.issues]
    raise StageFailed(f"aborted: {len(issues)} validation issue(s): {'; '.join(issues[:10])}")


@dag(
    dag_id="daily_user_engagement",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": StageFailureNotifier(webhook_conn_id=ALERT_WEBHOOK_CONN_ID),
    },
    tags=["agent-etl", "reference", "engagement"],
    doc_md=__doc__,
)
def daily_user_engagement() -> None:
    extract_events = ExtractOperator(
        task_id="extract_events",
        sources=[
            {
                "name": "events",
                "type": "sql",
                "conn_id": "agent_sources_db",
                "query": EVENTS_QUERY,
                "parameters": {"interval_start": INTERVAL_START, "interval_end": INTERVAL_END},
            }
        ],
    )
    extract_users = ExtractOperator(
        task_id="extract_users",
        sources=[
            {
                "name": "users",
                "type": "http",
                "conn_id": "agent_users_api",
                "endpoint": "/users",
                "records_path": "data",
                "pagination": {"style": "page", "size_param": "per_page", "page_size": 200},
            }
        ],
    )
    extract_campaigns = ExtractOperator(
        task_id="extract_campaigns",
        sources=[{"name": "campaigns", "type": "file", "path": SAMPLE_DIR + "/campaigns.csv"}],
    )

    validations = [
        ValidateOperator(
            task_id="validate_events",
            upstream=extract_events.output,
            dataset="events",
            expected_schema={
                "event_id": "integer",
                "user_id": "integer",
                "event_type": "string",
                "event_ts": "string",
                "revenue": "float",
            },
            quality_rules=[
                {"column": "event_id", "rule": "unique"},
                {"column": "user_id", "rule": "not_null"},
                {"column": "event_type", "rule": "in_list", "values": EVENT_TYPES},
                {"column": "revenue", "rule": "range", "min": 0},
                {"column": "event_ts", "rule": "regex", "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"},
                {
                    "name": "event_ts_within_interval",
                    "column": "event_ts",
                    "rule": "sql",
                    "predicate": f"TRY_CAST(event_ts AS TIMESTAMP) >= TIMESTAMP '{INTERVAL_START}' "
                    f"AND TRY_CAST(event_ts AS TIMESTAMP) < TIMESTAMP '{INTERVAL_END}'",
                },
            ],
        ),
        ValidateOperator(
            task_id="validate_users",
            upstream=extract_users.output,
            dataset="users",
            expected_schema={"user_id": "integer", "country": "string", "plan": "string"},
            quality_rules=[
                {"column": "user_id", "rule": "not_null"},
                {"column": "user_id", "rule": "unique"},
                {"column": "plan", "rule": "in_list", "values": ["free", "pro", "team"]},
            ],
        ),
        ValidateOperator(
            task_id="validate_campaigns",
            upstream=extract_campaigns.output,
            dataset="campaigns",
            expected_schema={"campaign_id": "string", "channel": "string"},
            quality_rules=[{"column": "campaign_id", "rule": "unique"}],
        ),
    ]
    outputs = [v.output for v in validations]

    transform = TransformOperator(
        task_id="transform",
        upstream=[extract_events.output, extract_users.output, extract_campaigns.output],
        transformations=[
            {"name": "enriched", "type": "sql", "sql": ENRICHED_SQL},
            {"name": "daily", "type": "sql", "sql": DAILY_SQL},
            {"name": "flagged", "type": "sql", "sql": FLAGGED_SQL},
        ],
        output_dataset="user_engagement_daily",
    )
    load = LoadOperator(
        task_id="load",
        upstream=transform.output,
        conn_id="agent_warehouse",
        target_table="user_engagement_daily",
        load_strategy="upsert",
        upsert_key=["user_id", "date"],
    )
    report = PipelineReportOperator(
        task_id="report",
        output_path=REPORTS_DIR + "/{{ dag.dag_id }}__{{ run_id | replace(':', '_') }}.json",
    )

    stop = abort(outputs)
    route(outputs) >> [transform, stop]
    [load, stop] >> report


daily_user_engagement()
