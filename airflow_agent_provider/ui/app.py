"""The FastAPI app the plugin mounts at ``/agent-pipeline``: the run page and the DAG page.

Both routes depend on Airflow's own ``requires_access_dag`` (a JWT in ``Authorization: Bearer`` or the UI's
session cookie, then the auth manager's permission for the DAG's runs): no login, 401; no permission, 403.
The data then comes from the REST API, read as that same user (see :mod:`.client`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from airflow_agent_provider.ui import DAG_VIEW_ROUTE, ROOT_APP_KEY, RUN_VIEW_ROUTE, URL_PREFIX
from airflow_agent_provider.ui.client import PAGE_LIMIT, AirflowApi, ApiError, FinishedRuns, credentials_of, q
from airflow_agent_provider.ui.render import dag_page, error_page, run_page
from airflow_agent_provider.ui.views import build_history, build_run_view, report_tasks

XCOM_KEYS = ("return_value", "decision")
DEFAULT_DAYS = 30
FINAL_STATES = ("success", "failed")


def create_app() -> FastAPI:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(title="Agent pipeline", docs_url=None, redoc_url=None, openapi_url=None)
    can_read_runs = [
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN)),
        Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
    ]
    finished = FinishedRuns()

    def api(request: Request) -> AirflowApi:
        root = request.scope.get(ROOT_APP_KEY)
        if root is None:
            raise ApiError(500, "the agent_pipeline_root_app middleware is not installed")
        return AirflowApi(root, credentials_of(request.headers, request.cookies, COOKIE_NAME_JWT_TOKEN))

    @app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=can_read_runs)
    async def run_view(dag_id: str, run_id: str, request: Request) -> HTMLResponse:
        ui_base = _ui_base(request)
        started = time.perf_counter()
        async with api(request) as client:
            data = await load_run(client, dag_id, run_id)
        loaded = time.perf_counter()
        html = run_page(
            build_run_view(*data, ui_base=ui_base), dag_url=f"{ui_base}/dags/{q(dag_id)}/plugin/{DAG_VIEW_ROUTE}"
        )
        return _html(html, client, loaded - started, time.perf_counter() - loaded)

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=can_read_runs)
    async def dag_view(
        dag_id: str, request: Request, days: int = Query(DEFAULT_DAYS, ge=1, le=PAGE_LIMIT)
    ) -> HTMLResponse:
        started = time.perf_counter()
        async with api(request) as client:
            runs, reports = await load_history(client, dag_id, days, finished)
        loaded = time.perf_counter()
        html = dag_page(dag_id, build_history(runs, reports, _ui_base(request), RUN_VIEW_ROUTE))
        return _html(html, client, loaded - started, time.perf_counter() - loaded)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> HTMLResponse:
        return HTMLResponse(error_page(err.status, err.detail), status_code=err.status)

    return app


def _html(html: str, client: AirflowApi, api_s: float, render_s: float) -> HTMLResponse:
    """The page, with what it cost in a ``Server-Timing`` header (REST calls made, rendering)."""
    timing = f'api;dur={api_s * 1000:.1f};desc="{client.calls} REST calls", render;dur={render_s * 1000:.1f}'
    return HTMLResponse(html, headers={"Server-Timing": timing})


def _ui_base(request: Request) -> str:
    """Airflow's root path (empty unless it is served under a sub-path): this app's mount point without it."""
    return str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)


async def load_run(client: AirflowApi, dag_id: str, run_id: str) -> tuple[Any, Any, Any, Any]:
    """The run, the DAG's tasks, the run's task instances and their ``return_value``/``decision`` XComs."""
    base = f"/dags/{q(dag_id)}/dagRuns/{q(run_id)}"
    dag_run, tasks, tis, entries = await asyncio.gather(
        client.get(base),
        client.get(f"/dags/{q(dag_id)}/tasks"),
        client.get(f"{base}/taskInstances", limit=PAGE_LIMIT),
        client.get(f"{base}/taskInstances/~/xcomEntries", limit=PAGE_LIMIT),
    )
    reports = set(report_tasks(tasks["tasks"]))
    wanted = [
        (str(e["task_id"]), str(e["key"]), int(e["map_index"]))
        for e in entries["xcom_entries"]
        if e["key"] in XCOM_KEYS and e["task_id"] not in reports  # the page rebuilds the report's summary
    ]
    values = await asyncio.gather(*(client.xcom_value(dag_id, run_id, *w) for w in wanted))
    xcoms: dict[tuple[str, str], list[Any]] = {}
    for (task_id, key, _), value in zip(wanted, values, strict=True):
        xcoms.setdefault((task_id, key), []).append(value)
    return dag_run, tasks["tasks"], tis["task_instances"], xcoms


async def load_history(
    client: AirflowApi, dag_id: str, days: int, finished: FinishedRuns | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """The DAG's last ``days`` runs and, per run id, the report task's pipeline-state document.

    A finished run's document is read once and then kept in ``finished``.
    """
    runs_body, tasks = await asyncio.gather(
        client.get(f"/dags/{q(dag_id)}/dagRuns", limit=days, order_by="-run_after"),
        client.get(f"/dags/{q(dag_id)}/tasks"),
    )
    runs = list(runs_body["dag_runs"])
    report = next(iter(report_tasks(tasks["tasks"])), None)
    if report is None:
        return runs, {}
    finished = finished if finished is not None else FinishedRuns(0)
    keys = {r["dag_run_id"]: (dag_id, r["dag_run_id"], report, r.get("end_date")) for r in runs}
    reports = {}
    missing = []
    for run in runs:
        known, value = finished.get(keys[run["dag_run_id"]])
        if known:
            reports[run["dag_run_id"]] = value
        else:
            missing.append(run)
    values = await asyncio.gather(
        *(client.xcom_value(dag_id, r["dag_run_id"], report, "return_value") for r in missing)
    )
    for run, value in zip(missing, values, strict=True):
        reports[run["dag_run_id"]] = value
        if run.get("state") in FINAL_STATES and run.get("end_date"):
            finished.put(keys[run["dag_run_id"]], value)
    return runs, reports
