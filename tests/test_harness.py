from __future__ import annotations

import pytest

from tests.support.dags import run_dag, task_states, xcom


@pytest.mark.airflow
def test_dag_test_threads_xcom(airflow_db):
    dr = run_dag("smoke_dag")
    assert task_states(dr) == {"one": "success", "two": "success"}
    assert xcom(dr, "two") == 2
