"""Cold start: a stage imports what its work needs, and never pandas (issue 15, point 1).

Each Airflow task runs in a fresh process and pays for every module it imports; pandas (with numpy's
and its own hundreds of modules) costs about a second there. The pipeline DAG runs here in a fresh
interpreter: extract from SQL, file and HTTP sources, validation, routing by Claude (FakeClaude),
transform, load, report. A spy on the import system records the call stack of the first
``import pandas``, so a failure names the stage and line that asked for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.testing import FakeClaude
from tests.support.operators import Sources
from tests.support.routing import answer

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys, traceback

first = []


class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" and not first:
            first.append("".join(traceback.format_stack()[-18:-4]))
        return None


sys.meta_path.insert(0, Spy())
from tests.support.dags import run_dag, task_states, xcom

for conf in json.loads(sys.argv[1]):
    run = run_dag("cold_start", conf=conf)
    print(json.dumps({
        "states": {task: str(state) for task, state in task_states(run).items()},
        "route": xcom(run, "route", "decision")["route"],
        "rows_loaded": (xcom(run, "report") or {}).get("rows_loaded"),
        "pandas": "pandas" in sys.modules,
        "first_import": first[0] if first else None,
    }))
"""
STAGES = ["extract", "validate", "route", "transform", "load", "report"]


def _run_in_a_fresh_process(confs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the DAG once per conf, one after the other, in one new interpreter; what each run left imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(confs)],
        cwd=ROOT,
        env=os.environ.copy(),  # AIRFLOW_HOME, the migrated metadata DB and the connections of this test
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"states"')]


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeClaude(api_key="cold-start-key") as fake:
        conn = {"conn_type": "anthropic", "host": fake.url, "password": "cold-start-key"}
        monkeypatch.setenv("AIRFLOW_CONN_ANTHROPIC_DEFAULT", json.dumps(conn))
        yield fake


class TestColdStart:
    def test_no_stage_imports_pandas(
        self, connections: Sources, claude: FakeClaude, pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """First a run loading into PostgreSQL: no stage imports pandas. Then one loading into SQLite: the
        only import of pandas is the one ADBC's DBAPI module makes (it imports ``pyarrow.dataset``, whose
        module set-up builds a scalar, and pyarrow's pandas shim imports pandas to inspect it)."""
        monkeypatch.setenv("AIRFLOW_CONN_COLD_PG_WAREHOUSE", pg_url.replace("postgresql+psycopg2://", "postgresql://"))
        claude.set_default(answer("transform", 0.9))
        conf = connections.conf(day="2026-11-09", report_path=str(tmp_path / "report.json"))

        postgres, sqlite = _run_in_a_fresh_process(
            [{**conf, "warehouse_conn": "cold_pg_warehouse"}, {**conf, "warehouse_conn": "op_warehouse"}]
        )

        for run in (postgres, sqlite):
            assert {task: run["states"][task] for task in STAGES} == dict.fromkeys(STAGES, "success")
            assert run["route"] == "transform" and run["rows_loaded"] == 2
        assert len(claude.messages_requests) == 2  # each run's routing asked Claude
        assert postgres["pandas"] is False, f"a stage imported pandas:\n{postgres['first_import']}"
        if sqlite["pandas"]:  # known: see the docstring (the SQLite load's engine is not this test's to change)
            assert "adbc_driver_manager/dbapi.py" in sqlite["first_import"], sqlite["first_import"]

    def test_empty_results_stage_without_pandas(self, tmp_path: Path) -> None:
        """An empty query result, a CSV with only its header and a transform query with no rows stage their
        columns without pandas (``Schema.empty_table()`` and ``pyarrow.array([])`` would import it)."""
        script = f"""
import json, sqlite3, sys
import sqlalchemy
from airflow_agent_provider.contracts import parse_sources
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.engines.staging import shared_cursor, write_query

root = {str(tmp_path)!r}
with sqlite3.connect(root + "/db.sqlite") as con:
    con.execute("CREATE TABLE t (id INTEGER, at TEXT)")
open(root + "/header.csv", "w").write("id,at\\n")
engine = sqlalchemy.create_engine("sqlite:///" + root + "/db.sqlite")
sources = parse_sources([{{"name": "rows", "type": "sql", "conn_id": "c", "query": "SELECT * FROM t"}},
                         {{"name": "header", "type": "file", "path": root + "/header.csv"}}])
result = extract_sources(sources, dataset_uri=lambda n: root + "/staged/" + n, sql_engine=lambda _c: engine,
                         expected_row_count_min=0)
query = write_query(shared_cursor(), "SELECT 1::BIGINT AS n, now() AS at WHERE false", root + "/staged/query")
counts = [result.datasets["rows"].row_count, result.datasets["header"].row_count, query.row_count]
print(json.dumps({{"counts": counts, "columns": query.columns, "pandas": "pandas" in sys.modules}}))
"""
        command = [sys.executable, "-c", script]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        assert probe["counts"] == [0, 0, 0] and probe["columns"] == {"n": "integer", "at": "timestamp"}
        assert probe["pandas"] is False
