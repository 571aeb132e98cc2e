"""The deployment's settings the engines use: plain values, with no Airflow and no environment reads.

The operators read them from ``[agent_provider]`` (``airflow_agent_provider.settings``) and hand
them over with :func:`configure` before a stage runs. Code that calls the engines directly gets
the defaults, or configures its own.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineSettings:
    """What the engines take from the deployment.

    :param duckdb_memory: DuckDB's memory limit for scans, validation, loads and fixes.
    :param transform_memory: DuckDB's memory limit of a transform's isolated database.
    :param spill_folder: where DuckDB spills what does not fit in memory (default: a folder in the temp dir).
    """

    duckdb_memory: str = "1GB"
    transform_memory: str = "512MB"
    spill_folder: str = os.path.join(tempfile.gettempdir(), "agent_provider_duckdb")


_current = EngineSettings()


def configure(settings: EngineSettings) -> None:
    """Use ``settings`` from now on in this process (the process-wide DuckDB keeps those it was made with)."""
    global _current  # noqa: PLW0603 - one value per process, set by the operators before a stage runs
    _current = settings


def current() -> EngineSettings:
    return _current
