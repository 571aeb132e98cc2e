"""A load big enough to be killed in the middle of, on a task with one retry.

``stage`` writes ``ROWS`` keyed rows (deterministic); ``load`` upserts them into
``crash_task_target`` through ``faults_crash_wh``, whose PostgreSQL sessions carry the
``application_name`` the crash test looks for in ``pg_stat_activity``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_agent_provider.operators import LoadOperator

ROWS = 200_000


@task
def stage(**context: Any) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.engines import staging
    from airflow_agent_provider.operators._common import run_scope

    rng = np.random.default_rng(20261110)
    data = pa.table(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "user_id": rng.integers(1, 5_000, ROWS),
            "kind": pa.array(np.where(rng.random(ROWS) < 0.6, "click", "purchase")),
            "amount": np.round(rng.random(ROWS) * 250, 2),
            "note": pa.array([f"event {i} of the day" for i in range(ROWS)]),
        }
    )
    writer = staging.DatasetWriter(run_scope(context).dataset_uri(None, "events"))
    writer.write(data)
    return StageResult(stage="transform", status="success", datasets={"events": writer.finish()}).to_xcom()


with DAG(
    "faults_crash_load",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
):
    LoadOperator(
        task_id="load",
        upstream=stage(),
        conn_id="faults_crash_wh",
        target_table="crash_task_target",
        load_strategy="upsert",
        upsert_key=["id"],
        batch_rows=20_000,
        retries=1,
        retry_delay=timedelta(seconds=15),
    )
