"""Types of the staging fixtures."""

from __future__ import annotations

from collections.abc import Callable

from airflow_agent_provider.contracts import DatasetRef

Stage = Callable[..., DatasetRef]
"""The ``stage`` fixture: ``stage(*parts)`` stages a dataset from dicts of columns or Arrow tables."""
