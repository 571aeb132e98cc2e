"""Every ``[agent_provider]`` setting, read in one place (the model: astronomer-cosmos's ``settings.py``).

An option is read from the Airflow config (``airflow.cfg``, or ``AIRFLOW__AGENT_PROVIDER__<OPTION>``),
else from the environment variable it was read from before it became an option (scripts and docs
still set them), else it takes its default. Each is registered, with its description and default,
under ``config`` in ``get_provider_info.py``; a test checks the two agree.

Adding a setting: one entry in :data:`OPTIONS`, and its registration in ``get_provider_info.py``.
Operators read settings here and hand the engines plain values (:func:`configure_engines`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airflow_agent_provider.engines import settings as engines

SECTION = "agent_provider"


def _airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


@dataclass(frozen=True)
class Option:
    """How one option is found when ``[agent_provider]`` does not set it."""

    default: Callable[[], str]
    env: str | None = None
    """The environment variable read before the default."""


OPTIONS: dict[str, Option] = {
    "staging_root": Option(lambda: os.path.join(_airflow_home(), "staging"), env="AGENT_PROVIDER_STAGING_ROOT"),
    "plans_folder": Option(lambda: os.path.join(os.environ.get("AGENT_PROVIDER_HOME") or _airflow_home(), "plans")),
    "duckdb_memory": Option(lambda: engines.EngineSettings.duckdb_memory, env="AGENT_PROVIDER_DUCKDB_MEMORY"),
    "transform_duckdb_memory": Option(
        lambda: engines.EngineSettings.transform_memory, env="AGENT_PROVIDER_DUCKDB_MEMORY"
    ),
    "duckdb_spill_folder": Option(lambda: engines.EngineSettings.spill_folder),
}


def get(option: str) -> str:
    """The value of ``[agent_provider] <option>``, else of its environment variable, else its default."""
    from airflow.sdk import conf

    found = OPTIONS[option]
    configured = conf.get(SECTION, option, fallback=None)
    return str(configured or (found.env and os.environ.get(found.env)) or found.default())


def staging_root() -> str:
    return get("staging_root")


def plans_folder() -> Path:
    return Path(get("plans_folder")).expanduser()


def engine_settings() -> engines.EngineSettings:
    return engines.EngineSettings(
        duckdb_memory=get("duckdb_memory"),
        transform_memory=get("transform_duckdb_memory"),
        spill_folder=str(Path(get("duckdb_spill_folder")).expanduser()),
    )


def configure_engines() -> None:
    """Hand the engines this deployment's settings; every stage operator calls it before its engine runs."""
    engines.configure(engine_settings())
