"""The ``[agent_provider]`` settings: registered, read in one place, handed to the engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from airflow_agent_provider import settings
from airflow_agent_provider.engines import settings as engine_settings
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.transform import isolated_connection
from airflow_agent_provider.get_provider_info import get_provider_info

REGISTERED = get_provider_info()["config"]["agent_provider"]["options"]


@pytest.fixture(autouse=True)
def restore_engine_settings() -> Iterator[None]:
    before = engine_settings.current()
    yield
    engine_settings.configure(before)


def _unset(monkeypatch: pytest.MonkeyPatch, option: str) -> None:
    monkeypatch.delenv(f"AIRFLOW__AGENT_PROVIDER__{option.upper()}", raising=False)
    env = settings.OPTIONS[option].env
    if env:
        monkeypatch.delenv(env, raising=False)


def memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def duckdb_reads(limit: str) -> str:
    """How DuckDB reports a memory limit it was given (``300MB`` reads back as ``286.1 MiB``)."""
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{limit}'")
        return memory_limit(con)
    finally:
        con.close()


class TestRegistration:
    def test_every_setting_is_registered_and_every_registered_option_is_read(self) -> None:
        assert set(REGISTERED) == set(settings.OPTIONS)

    @pytest.mark.parametrize("option", sorted(settings.OPTIONS))
    def test_the_description_names_the_environment_fallback(self, option: str) -> None:
        env = settings.OPTIONS[option].env
        assert env is None or f"${env}" in REGISTERED[option]["description"]

    @pytest.mark.parametrize(("option", "default"), [("duckdb_memory", "1GB"), ("transform_duckdb_memory", "512MB")])
    def test_the_description_names_the_default_that_is_used(
        self, monkeypatch: pytest.MonkeyPatch, option: str, default: str
    ) -> None:
        _unset(monkeypatch, option)
        assert settings.get(option) == default
        assert f"else {default}." in REGISTERED[option]["description"]


class TestPrecedence:
    @pytest.mark.parametrize("option", [name for name, found in sorted(settings.OPTIONS.items()) if found.env])
    def test_the_option_wins_over_the_environment_variable_which_wins_over_the_default(
        self, monkeypatch: pytest.MonkeyPatch, option: str
    ) -> None:
        _unset(monkeypatch, option)
        default = settings.get(option)
        monkeypatch.setenv(str(settings.OPTIONS[option].env), "from-environment")
        assert settings.get(option) == "from-environment" != default
        monkeypatch.setenv(f"AIRFLOW__AGENT_PROVIDER__{option.upper()}", "from-option")
        assert settings.get(option) == "from-option"

    def test_plans_follow_agent_provider_home(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        _unset(monkeypatch, "plans_folder")
        monkeypatch.setenv("AGENT_PROVIDER_HOME", str(tmp_path))
        assert settings.plans_folder() == tmp_path / "plans"
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__PLANS_FOLDER", str(tmp_path / "reviewed"))
        assert settings.plans_folder() == tmp_path / "reviewed"


class TestTheEnginesGetTheSettings:
    def test_scans_and_transforms_use_their_own_memory_limits_and_the_spill_folder(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, staging_root: str
    ) -> None:
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__DUCKDB_MEMORY", "300MB")
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__TRANSFORM_DUCKDB_MEMORY", "200MB")
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__DUCKDB_SPILL_FOLDER", str(tmp_path / "spill"))
        settings.configure_engines()
        writer = staging.DatasetWriter(f"{staging_root}/events")
        writer.write(pa.table({"id": [1, 2]}))
        events = writer.finish()

        scan = staging.connect()
        transform = isolated_connection({"events": events})
        try:
            assert memory_limit(scan) == duckdb_reads("300MB")
            assert memory_limit(transform) == duckdb_reads("200MB")
            spill = scan.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
            assert spill == str(tmp_path / "spill")
        finally:
            scan.close()
            transform.close()
