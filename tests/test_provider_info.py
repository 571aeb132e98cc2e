"""The provider registration: a broken provider info would break every Airflow process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

import airflow_agent_provider
from airflow_agent_provider.get_provider_info import get_provider_info

DIST = "airflow-agent-provider"


def _schema() -> dict:
    import importlib.resources

    return json.loads(importlib.resources.files("airflow").joinpath("provider_info.schema.json").read_text())


def _named_modules(info: dict) -> list[str]:
    modules = [m for group in info.get("operators", []) for m in group["python-modules"]]
    modules += [m for group in info.get("hooks", []) for m in group["python-modules"]]
    return modules


def _named_classes(info: dict) -> list[str]:
    classes = list(info.get("notifications", []))
    classes += [c["hook-class-name"] for c in info.get("connection-types", [])]
    return classes


class TestProviderInfo:
    def test_matches_airflows_provider_info_schema(self) -> None:
        import jsonschema

        jsonschema.validate(get_provider_info(), _schema())

    def test_config_options_match_the_option_schema(self) -> None:
        import jsonschema

        option_schema = {**_schema()["definitions"]["option"], "additionalProperties": False}
        for section in get_provider_info()["config"].values():
            for option in section["options"].values():
                jsonschema.validate(option, option_schema)

    def test_package_name_is_the_canonical_distribution_name(self) -> None:
        assert get_provider_info()["package-name"] == canonicalize_name(distribution(DIST).metadata["Name"])

    def test_package_version_is_the_distribution_version(self) -> None:
        assert airflow_agent_provider.__version__ == distribution(DIST).version

    def test_entry_point_resolves_to_get_provider_info(self) -> None:
        points = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == DIST]
        assert len(points) == 1
        assert points[0].load() is get_provider_info

    def test_every_named_module_imports(self) -> None:
        modules = _named_modules(get_provider_info())
        assert "airflow_agent_provider.operators.extract" in modules
        for name in modules:
            importlib.import_module(name)

    def test_every_named_class_imports(self) -> None:
        for dotted in _named_classes(get_provider_info()):
            module, _, attr = dotted.rpartition(".")
            assert isinstance(getattr(importlib.import_module(module), attr), type), dotted

    def test_staging_root_option_is_honoured(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_agent_provider import settings

        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", "/srv/airflow-staging")
        assert settings.staging_root() == "/srv/airflow-staging"


class TestAirflowCli:
    def test_providers_get_shows_the_provider_and_its_config(self) -> None:
        shown = _airflow_json("providers", "get", DIST, "--full")
        assert shown[0]["package-name"] == DIST
        assert "staging_root" in shown[0]["config"]["agent_provider"]["options"]
        assert shown[0]["documentation-url"].startswith("https://")


def _airflow_json(*args: str) -> list[dict]:
    """Run the ``airflow`` CLI of this virtualenv (with the test AIRFLOW_HOME) and parse its JSON output."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout[done.stdout.index("[") :])
