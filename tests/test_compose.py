"""docker-compose.yaml, Dockerfile and .env.example: a structural check of the Celery deployment.

No Docker engine runs here; ``docker compose config -q`` runs too when a compose client exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
LONG_RUNNING = {"postgres", "redis", "warehouse", *AIRFLOW_SERVICES}
STAGING_ROOT = "/opt/airflow/staging"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _expand_defaults(value: str) -> str:
    """``${NAME:-default}`` -> ``default`` (what compose gives without a .env)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _url(value: str) -> Any:
    return urlsplit(_expand_defaults(value).removeprefix("db+"))


class TestServices:
    def test_every_component_of_the_celery_topology_is_there(self, services: dict[str, Any]) -> None:
        required = {"postgres", "redis", "warehouse", "airflow-init", *AIRFLOW_SERVICES}
        assert required <= set(services)

    @pytest.mark.parametrize(("name", "command"), sorted(AIRFLOW_SERVICES.items()))
    def test_airflow_services_build_the_provider_image_and_run_their_command(
        self, services: dict[str, Any], name: str, command: str
    ) -> None:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["build"]["args"]["AIRFLOW_VERSION"] == AIRFLOW_VERSION
        assert AIRFLOW_VERSION in _expand_defaults(service["image"])
        assert service["command"] == command
        assert _env(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"

    def test_long_running_services_have_healthchecks(self, services: dict[str, Any]) -> None:
        missing = [name for name in sorted(LONG_RUNNING) if not services[name].get("healthcheck", {}).get("test")]
        assert missing == []

    def test_worker_is_scalable(self, services: dict[str, Any]) -> None:
        worker = services["airflow-worker"]
        assert "container_name" not in worker and "ports" not in worker
        assert _env(worker)["DUMB_INIT_SETSID"] == "0"


class TestWiring:
    def test_metadata_db_and_result_backend_point_at_the_postgres_service(self, services: dict[str, Any]) -> None:
        pg = _env(services["postgres"])
        for name in AIRFLOW_SERVICES:
            env = _env(services[name])
            for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
                url = _url(env[key])
                assert (url.hostname, url.port or 5432) == ("postgres", 5432), key
                assert (url.username, url.password, url.path) == (
                    pg["POSTGRES_USER"],
                    _expand_defaults(pg["POSTGRES_PASSWORD"]),
                    "/" + pg["POSTGRES_DB"],
                ), key

    def test_broker_is_the_redis_service(self, services: dict[str, Any]) -> None:
        exposed = {int(port) for port in services["redis"]["expose"]}
        for name in AIRFLOW_SERVICES:
            url = _url(_env(services[name])["AIRFLOW__CELERY__BROKER_URL"])
            assert url.scheme == "redis" and url.hostname == "redis" and url.port in exposed

    def test_warehouse_connection_points_at_the_warehouse_service(self, services: dict[str, Any]) -> None:
        wh = _env(services["warehouse"])
        url = _url(_env(services["airflow-worker"])["AIRFLOW_CONN_AGENT_WAREHOUSE"])
        assert url.scheme in ("postgres", "postgresql")
        assert (url.hostname, url.username, url.path) == ("warehouse", wh["POSTGRES_USER"], "/" + wh["POSTGRES_DB"])
        assert url.password == _expand_defaults(wh["POSTGRES_PASSWORD"])

    def test_workers_call_the_api_server_back(self, services: dict[str, Any]) -> None:
        url = _url(_env(services["airflow-worker"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.hostname, url.port, url.path) == ("airflow-apiserver", 8080, "/execution/")
        assert services["airflow-apiserver"]["command"] == "api-server"

    @pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
    def test_every_airflow_service_mounts_the_shared_staging_volume(
        self, compose: dict[str, Any], services: dict[str, Any], name: str
    ) -> None:
        service = services[name]
        assert _env(service)["AGENT_PROVIDER_STAGING_ROOT"] == STAGING_ROOT
        named = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == STAGING_ROOT]
        assert len(named) == 1 and named[0] in compose["volumes"], "staging must be one named volume shared by all"

    def test_start_order(self, services: dict[str, Any]) -> None:
        for name in AIRFLOW_SERVICES:
            deps = services[name]["depends_on"]
            assert deps["postgres"]["condition"] == "service_healthy", name
            assert deps["redis"]["condition"] == "service_healthy", name
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
        init = services["airflow-init"]
        assert _env(init)["_AIRFLOW_DB_MIGRATE"] == "true"
        assert "airflow-init" not in init.get("depends_on", {})

    def test_only_the_api_server_and_flower_publish_ports_on_loopback(self, services: dict[str, Any]) -> None:
        published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
        assert set(published) <= {"airflow-apiserver", "flower"}
        assert "airflow-apiserver" in published
        for ports in published.values():
            assert all(_expand_defaults(str(p)).startswith("127.0.0.1:") for p in ports)
        assert services["flower"]["profiles"] == ["flower"]


class TestImageAndEnv:
    def test_dockerfile_extends_the_official_image_and_pins_airflow(self) -> None:
        text = (ROOT / "Dockerfile").read_text()
        assert f"ARG AIRFLOW_VERSION={AIRFLOW_VERSION}" in text
        assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", text, re.M)
        assert '"apache-airflow==${AIRFLOW_VERSION}"' in text
        assert "constraints.txt" in text and "/opt/agent-provider" in text

    def test_env_example_names_every_variable_compose_needs_and_holds_no_secret(self, compose: dict[str, Any]) -> None:
        example = (ROOT / ".env.example").read_text()
        defined = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", example, re.M))
        text = COMPOSE.read_text()  # $${NAME} is the container's own variable, not compose's
        used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}", text))
        needed = used - set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*):-", text))
        assert needed <= set(defined), f"not in .env.example: {sorted(needed - set(defined))}"
        assert defined["ANTHROPIC_API_KEY"] == ""
        assert defined["FERNET_KEY"] == "" and defined["AIRFLOW_JWT_SECRET"] == ""
        assert not re.search(r"sk-ant-[A-Za-z0-9]", example)

    def test_compose_client_accepts_the_file(self) -> None:
        docker = shutil.which("docker")
        probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if not docker or not probe or probe.returncode != 0:
            pytest.skip("no docker compose client on this machine (the structural tests above still apply)")
        done = subprocess.run(
            [docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
