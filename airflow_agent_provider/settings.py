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
from pathlib import Path
from typing import NamedTuple

from airflow_agent_provider.engines import settings as engines

SECTION = "agent_provider"


def _home(variable: str = "AIRFLOW_HOME") -> str:
    return os.environ.get(variable) or os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


class Option(NamedTuple):
    """How one option is found when ``[agent_provider]`` does not set it: ``env``, then ``default()``."""

    env: str | None
    default: Callable[[], str]


OPTIONS: dict[str, Option] = {
    "staging_root": Option("AGENT_PROVIDER_STAGING_ROOT", lambda: os.path.join(_home(), "staging")),
    "plans_folder": Option(None, lambda: os.path.join(_home("AGENT_PROVIDER_HOME"), "plans")),
    "duckdb_memory": Option("AGENT_PROVIDER_DUCKDB_MEMORY", lambda: engines.EngineSettings.duckdb_memory),
    "transform_duckdb_memory": Option("AGENT_PROVIDER_DUCKDB_MEMORY", lambda: engines.EngineSettings.transform_memory),
    "duckdb_spill_folder": Option(None, lambda: engines.EngineSettings.spill_folder),
    "staging_retention": Option(None, lambda: "delete_on_success"),
}


def get(option: str) -> str:
    """The value of ``[agent_provider] <option>``, else of its environment variable, else its default."""
    from airflow.sdk import conf

    env, default = OPTIONS[option]
    return str(conf.get(SECTION, option, fallback=None) or (env and os.environ.get(env)) or default())


def staging_root() -> str:
    return get("staging_root")


def staging_retention() -> str:
    return get("staging_retention")


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
