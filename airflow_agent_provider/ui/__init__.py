"""The run view in Airflow's UI: a FastAPI app at ``/agent-pipeline`` and two external views.

Registered through the ``airflow.plugins`` entry point (:class:`AgentPipelinePlugin`):

- ``/agent-pipeline/dags/{dag_id}/runs/{run_id}``: a tab on each DAG run (``destination: "dag_run"``):
  stages timeline, rows, issues with samples, the route and who decided it, tokens and cost, quarantined
  rows, links to each task's log;
- ``/agent-pipeline/dags/{dag_id}``: a tab on the DAG (``destination: "dag"``): the history per logical date.

The pages read the run through Airflow's REST API with the caller's own token or UI session, so they show
only what that user may read and answer 401/403 without a login. Kept import-cheap (every Airflow
component loads plugins): the FastAPI app is built on its first request, in the API server.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/agent-pipeline"
ROOT_APP_KEY = "agent_pipeline.root_app"
RUN_VIEW_ROUTE = "agent-pipeline-run"
DAG_VIEW_ROUTE = "agent-pipeline-history"


class PipelineApp:
    """The plugin's ASGI app, built (``ui.app.create_app``) on the first request it serves."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_agent_provider.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class RootAppReference:
    """A root middleware that leaves Airflow's API app in each request's scope.

    The plugin's pages call the REST API of that app in-process (no socket, no base URL to configure),
    with the caller's credentials, so Airflow itself decides what the caller may read.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and "app" in scope:
            scope.setdefault(ROOT_APP_KEY, scope["app"])
        await self.app(scope, receive, send)


class AgentPipelinePlugin(AirflowPlugin):
    """The agent-pipeline pages, mounted in Airflow's API server and shown as tabs in its UI."""

    name = "agent_pipeline_ui"
    fastapi_apps = [{"app": PipelineApp(), "url_prefix": URL_PREFIX, "name": "Agent pipeline"}]  # noqa: RUF012
    fastapi_root_middlewares = [{"middleware": RootAppReference, "name": "agent_pipeline_root_app"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Pipeline",
            "href": URL_PREFIX + "/dags/{DAG_ID}/runs/{RUN_ID}",
            "destination": "dag_run",
            "url_route": RUN_VIEW_ROUTE,
        },
        {
            "name": "Pipeline history",
            "href": URL_PREFIX + "/dags/{DAG_ID}",
            "destination": "dag",
            "url_route": DAG_VIEW_ROUTE,
        },
    ]
