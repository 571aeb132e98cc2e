"""What the pages ask Airflow's REST API for, against a stand-in for the in-process client."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_agent_provider.ui.app import load_history, load_run
from airflow_agent_provider.ui.client import FinishedRuns
from tests.ui import fixtures
from tests.ui.fixtures import DAG_ID


class RestStandIn:
    """Answers the REST paths the pages read from fixture data; counts XCom reads."""

    def __init__(self, runs: list[dict[str, Any]], xcoms: dict[tuple[str, str, str], Any]) -> None:
        self.runs, self.xcoms, self.xcom_reads = runs, xcoms, 0

    async def get(self, path: str, **params: Any) -> Any:
        if path == f"/dags/{DAG_ID}/tasks":
            return {"tasks": fixtures.tasks()}
        if path == f"/dags/{DAG_ID}/dagRuns":
            return {"dag_runs": self.runs[: params["limit"]]}
        if path.endswith("/taskInstances"):
            return {"task_instances": fixtures.bad_run()["tis"]}
        if path.endswith("/taskInstances/~/xcomEntries"):
            entries = [{"task_id": t, "key": k, "map_index": -1} for (_, t, k) in self.xcoms]
            return {"xcom_entries": [*entries, {"task_id": "load", "key": "rows", "map_index": -1}]}
        return self.runs[0]

    async def xcom_value(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        self.xcom_reads += 1
        return self.xcoms.get((run_id, task_id, key))


class TestLoadHistory:
    def test_finished_runs_are_read_once(self) -> None:
        runs, reports = fixtures.history(30)
        runs[0] = {**runs[0], "state": "running", "end_date": None}
        api = RestStandIn(runs, {(run_id, "report", "return_value"): doc for run_id, doc in reports.items()})
        finished = FinishedRuns()

        first = asyncio.run(load_history(api, DAG_ID, 30, finished))  # type: ignore[arg-type]
        reads = api.xcom_reads
        again = asyncio.run(load_history(api, DAG_ID, 30, finished))  # type: ignore[arg-type]

        assert reads == 30
        assert api.xcom_reads - reads == 1  # only the running one
        assert first == again

    def test_a_rerun_run_is_read_again(self) -> None:
        runs, reports = fixtures.history(2)
        api = RestStandIn(runs, {(run_id, "report", "return_value"): doc for run_id, doc in reports.items()})
        finished = FinishedRuns()
        asyncio.run(load_history(api, DAG_ID, 2, finished))  # type: ignore[arg-type]

        api.runs = [{**runs[0], "end_date": "2026-12-01T00:00:00Z"}, runs[1]]
        asyncio.run(load_history(api, DAG_ID, 2, finished))  # type: ignore[arg-type]

        assert api.xcom_reads == 3


class TestLoadRun:
    def test_reads_each_stage_result_and_decision_but_no_other_key_nor_the_report(self) -> None:
        run = fixtures.bad_run()
        xcoms = {("manual__bad", t, k): values[0] for (t, k), values in run["xcoms"].items()}
        api = RestStandIn([run["dag_run"]], {**xcoms, ("manual__bad", "report", "return_value"): {"status": "x"}})

        dag_run, tasks, _tis, values = asyncio.run(load_run(api, DAG_ID, "manual__bad"))  # type: ignore[arg-type]

        assert api.xcom_reads == len(xcoms)  # not the report's document
        assert values == {key: list(v) for key, v in run["xcoms"].items()}
        assert dag_run["dag_run_id"] == "manual__bad" and len(tasks) == len(fixtures.OPERATORS)
