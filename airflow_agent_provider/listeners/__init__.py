"""Airflow listeners of the provider, registered through the ``airflow.plugins`` entry point.

:class:`StagingRetentionPlugin` adds :mod:`.retention`, which removes a run's staged data once the
run succeeds (``[agent_provider] staging_retention``). Kept import-cheap: every Airflow component
loads plugins.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_agent_provider.listeners import retention


class StagingRetentionPlugin(AirflowPlugin):
    """Removes a successful run's staged data, in whichever process sees the run succeed."""

    name = "agent_provider_staging_retention"
    listeners = [retention]  # noqa: RUF012  (AirflowPlugin declares it as a plain class attribute)
