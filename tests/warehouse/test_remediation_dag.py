"""SchemaRemediationOperator on a warehouse staging table in a real run (``dag.test()``), Claude played
by FakeClaude through the real anthropic client: the fix plans apply inside PostgreSQL, the fixed data
is a staging table of the run, the rows that cannot be cast reach the quarantine table there, and no
row passes through the worker."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import StageResult
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.testing import FakeClaude
from tests.agents.support import claude_conn, fake
from tests.support.dags import run_dag, task_states, xcom
from tests.support.fix_plans import CAST, QUARANTINE, RENAME, plan
from tests.warehouse.pairs import keep_rows_in_the_warehouse

__all__ = ["claude_conn", "fake"]

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def payments(wh_pg: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    with wh_pg.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE payments (uid bigint, amount text);"
            "INSERT INTO payments VALUES (1, '10.5'), (2, '20'), (3, '3.25'), (4, 'n/a')"
        )
    monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION", "keep")  # the fixed table is read below
    return wh_pg


def rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def test_fix_plans_apply_in_the_warehouse_with_no_row_in_the_worker(
    payments: sa.Engine, claude_conn: FakeClaude, monkeypatch: pytest.MonkeyPatch
) -> None:
    claude_conn.add(plan(RENAME), times=1)
    claude_conn.add(plan(QUARANTINE, CAST), times=1)
    seen = keep_rows_in_the_warehouse(monkeypatch)

    dag_run = run_dag("wh_remediation")

    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    result = StageResult.model_validate(xcom(dag_run, "remediate"))
    assert result.status == "pass" and result.metrics["iteration_count"] == 2
    assert [i["outcome"] for i in result.metrics["iterations"]] == ["fail", "pass"]
    fixed = result.datasets["payments"]
    prefix = f"postgres://wh_pg/agent_staging.{ws.run_prefix('wh_remediation', dag_run.run_id)}"
    assert fixed.uri.startswith(prefix) and result.datasets["payment_rejects"].uri.startswith(prefix)
    assert (fixed.columns, fixed.row_count) == ({"user_id": "integer", "amount": "float"}, 3)
    table = ws.StagedTable.parse(fixed.uri).sql
    assert rows(payments, f"SELECT user_id, amount FROM {table} ORDER BY 1") == [(1, 10.5), (2, 20.0), (3, 3.25)]
    rejects = "SELECT user_id, amount, quarantine_rule, quarantine_task_id FROM public.payment_rejects"
    assert rows(payments, rejects) == [("4", "n/a", "amount not_castable", "remediate")]
    assert result.usage.model_calls == 2
    assert seen and max(seen) <= 5  # the statements went through the guard
