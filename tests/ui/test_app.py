"""The plugin's registration and its app's login check (Airflow's own dependency), without a server."""

from __future__ import annotations

import pytest


class TestPlugin:
    def test_registered_through_the_airflow_plugins_entry_point(self) -> None:
        from importlib.metadata import entry_points

        [entry] = [e for e in entry_points(group="airflow.plugins") if e.name == "agent_pipeline_ui"]
        plugin = entry.load()

        [app] = plugin.fastapi_apps
        assert app["url_prefix"] == "/agent-pipeline"
        views = {v["destination"]: v["href"] for v in plugin.external_views}
        assert views == {
            "dag_run": "/agent-pipeline/dags/{DAG_ID}/runs/{RUN_ID}",
            "dag": "/agent-pipeline/dags/{DAG_ID}",
        }


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from airflow_agent_provider.ui.app import create_app

    return TestClient(create_app())


class TestLogin:
    @pytest.mark.parametrize("path", [pytest.param("/dags/d/runs/r", id="run"), pytest.param("/dags/d", id="dag")])
    def test_no_token_and_no_session_is_401(self, client, path: str) -> None:  # type: ignore[no-untyped-def]
        response = client.get(path)

        assert response.status_code == 401
        assert "pipeline" not in response.text.lower()


class TestImportCost:
    def test_loading_the_plugin_imports_neither_its_app_nor_the_contracts(self) -> None:
        """Every Airflow component loads plugins: the app, its renderer and the contracts wait for a request."""
        import subprocess
        import sys

        code = "import sys, airflow_agent_provider.ui; print(' '.join(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
        loaded = set(out.stdout.split())

        assert "airflow_agent_provider.ui" in loaded
        assert not {
            m for m in loaded if m.startswith(("airflow_agent_provider.ui.", "airflow_agent_provider.contracts"))
        }
