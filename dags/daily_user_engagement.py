"""Daily user engagement: the reference pipeline of airflow-agent-provider.

Each run covers one day (its data interval, midnight to midnight UTC):

1. extract, in parallel: the day's ``events`` (SQL on ``agent_sources_db``), the ``users`` profiles
   (paginated JSON API on ``agent_users_api``) and the ``campaigns`` file (CSV);
2. validate each dataset (schema and quality rules); a failed ``events`` validation gets Claude's
   diagnosis and recommendation;
3. ``route``: every validation passed -> ``transform``, with no model call. Otherwise Claude chooses
   one of the declared routes:

   - ``transform``: proceed, the issues are cosmetic or within tolerance;
   - ``remediate_schema``: events columns renamed or mistyped -> Claude proposes a fix plan (renames
     and casts only), the provider applies it and validates again, then ``transform``;
   - ``quarantine``: bad event rows -> ``QuarantineOperator`` moves them (as they arrived) to the
     ``events_quarantine`` table, keyed by ``event_id``, validates the clean rows again, then
     ``transform`` (no model call);
   - ``escalate``: a person must look first -> fails with Claude's rationale and the issues (no retry),
     so the alert reaches on-call; nothing is loaded;
   - ``abort``: the day is unusable -> fails with the issues and alerts; nothing is loaded.

   **Fallback**: when Claude cannot answer (no credentials, rate limited, down, off-contract, budget
   spent) the run takes ``quarantine``, the safest route that still delivers the day: clean rows go
   on, bad rows are kept in ``events_quarantine`` (nothing is lost), and when quarantine cannot make
   the data pass (duplicates, a broken users or campaigns file, ...) it fails and alerts instead of
   loading dirty data. The decision record (XCom key ``decision``) says ``fallback_used: true`` and why.
4. ``transform``: enrich events with users and campaigns, aggregate daily metrics per user, flag
   anomalous users (events more than 3 standard deviations above that day's mean). It runs after
   whichever of ``route`` (proceed), ``remediate_schema`` or ``quarantine`` happened
   (``none_failed_min_one_success``) and reads a remediated ``events`` dataset instead of the
   extracted one;
5. ``load``: upsert into ``user_engagement_daily`` keyed by ``(user_id, date)`` on ``agent_warehouse``
   (re-running a day gives the same table);
6. ``report``: the pipeline-state document (runs whatever happened).

Connections (``make demo`` sets them as environment variables):

- ``AIRFLOW_CONN_AGENT_SOURCES_DB='sqlite:////path/to/var/sample/events.db'``
- ``AIRFLOW_CONN_AGENT_USERS_API='{"conn_type": "http", "host": "127.0.0.1", "port": 8765}'``
- ``AIRFLOW_CONN_AGENT_WAREHOUSE='sqlite:////path/to/var/warehouse.db'``
- ``AIRFLOW_CONN_ANTHROPIC_DEFAULT='{"conn_type": "anthropic", "password": "<key>"}'`` (optional: only a
  failed validation asks Claude; ``make demo`` points it at FakeClaude, an offline stand-in)

A task that fails for good (``abort`` and ``escalate`` included) alerts through ``StageFailureNotifier`` when the
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
    QuarantineOperator,
    RemediationBranchOperator,
    SchemaRemediationOperator,
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
EVENTS_SCHEMA = {
    "event_id": "integer",
    "user_id": "integer",
    "event_type": "string",
    "event_ts": "string",
    "revenue": "float",
}
EVENTS_RULES: list[dict[str, Any]] = [
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
]

# The routes Claude may choose when a validation failed (it sees these descriptions, sorted by id).
ROUTES = {
    "transform": "Proceed: the issues are cosmetic or within tolerance (a handful of rows that do not change "
    "the daily metrics); transform and load the data as extracted.",
    "remediate_schema": "Event columns are renamed or mistyped (schema mismatch, an expected column missing): "
    "propose renames/casts, apply them, validate again, then transform.",
    "quarantine": "A minority of event rows break row rules (null user ids, unknown event types, negative or "
    "malformed values): move those rows to the events_quarantine table and continue with the clean rows.",
    "escalate": "Unexplained, suspicious or widespread problems (most rows bad, duplicated ids, users or "
    "campaigns broken): stop and let a person look before anything is loaded.",
    "abort": "The day's data is unusable (empty, the wrong day, a source obviously broken): stop the run with "
    "an alert and load nothing.",
}

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


@task(task_id="abort")
def abort(validations: list[dict[str, Any]]) -> None:
    """Stop the run: fail with the validation issues (no retry), so the run is failed and alerts fire."""
    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.operators import StageFailed

    issues = [i.summary() for r in map(StageResult.from_xcom, validations) for i in r.issues]
    raise StageFailed(f"aborted: {len(issues)} validation issue(s): {'; '.join(issues[:10])}")


@task(task_id="escalate")
def escalate(validations: list[dict[str, Any]], decision: dict[str, Any] | None) -> None:
    """Hand the run to a person: fail with the route's rationale and the issues (no retry), so the alert fires.

    (For an approval in the Airflow UI instead, give ``route`` ``require_approval=True``.)
    """
    from airflow_agent_provider.contracts import RouteDecision, StageResult
    from airflow_agent_provider.operators import StageFailed

    issues = [i.summary() for r in map(StageResult.from_xcom, validations) for i in r.issues]
    why = RouteDecision.model_validate(decision).rationale if decision else ""
    raise StageFailed(
        f"escalated to a person, nothing loaded: {why or 'no rationale recorded'} | "
        f"{len(issues)} validation issue(s): {'; '.join(issues[:10])}"
    )


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

    validate_events = ValidateOperator(
        task_id="validate_events",
        upstream=extract_events.output,
        dataset="events",
        expected_schema=EVENTS_SCHEMA,
        quality_rules=EVENTS_RULES,
        diagnose=True,
    )
    validations = [
        validate_events,
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

    route = RemediationBranchOperator(
        task_id="route",
        validation=outputs,
        branches=ROUTES,
        on_pass="transform",
        fallback="quarantine",
        max_cost_usd=0.50,
        timeout_s=60,
    )
    remediate_schema = SchemaRemediationOperator(
        task_id="remediate_schema",
        validation=validate_events.output,
        dataset="events",
        expected_schema=EVENTS_SCHEMA,
        quality_rules=EVENTS_RULES,
        max_iterations=3,
        allowed_actions=["rename_column", "cast_column"],
        max_cost_usd=1.00,
        timeout_s=60,
    )
    quarantine = QuarantineOperator(
        task_id="quarantine",
        validation=outputs,
        dataset="events",
        expected_schema=EVENTS_SCHEMA,
        quality_rules=EVENTS_RULES,
        quarantine_conn_id="agent_warehouse",
        quarantine_table="events_quarantine",
        quarantine_key=["event_id"],
    )
    transform = TransformOperator(
        task_id="transform",
        # later results win on a name: a remediated or quarantined ``events`` replaces the extracted one
        upstream=[
            extract_events.output,
            extract_users.output,
            extract_campaigns.output,
            remediate_schema.output,
            quarantine.output,
        ],
        transformations=[
            {"name": "enriched", "type": "sql", "sql": ENRICHED_SQL},
            {"name": "daily", "type": "sql", "sql": DAILY_SQL},
            {"name": "flagged", "type": "sql", "sql": FLAGGED_SQL},
        ],
        output_dataset="user_engagement_daily",
        trigger_rule="none_failed_min_one_success",
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
        on_failure_callback=None,  # it fails the run when a stage failed; that stage has already alerted
        retries=0,
    )

    stop = abort(outputs)
    hand_over = escalate(outputs, route.output["decision"])
    route >> [transform, remediate_schema, quarantine, hand_over, stop]
    [load, stop, hand_over] >> report


daily_user_engagement()
