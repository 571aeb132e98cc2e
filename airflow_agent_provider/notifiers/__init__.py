"""Alerts for failed stages."""

from airflow_agent_provider.notifiers.stage_failure import StageFailureNotifier

__all__ = ["StageFailureNotifier"]
