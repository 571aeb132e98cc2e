"""A smallest DAG to prove the harness: two tasks threading a value through XCom."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="smoke_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def smoke_dag() -> None:
    @task
    def one() -> dict:
        return {"n": 1}

    @task
    def two(value: dict) -> int:
        return value["n"] + 1

    two(one())


smoke_dag()
