"""OpenLineage for every operator: the three methods the OpenLineage provider's listener calls.

They delegate to ``airflow_agent_provider.lineage.operators`` (imported when the listener asks, never
when a DAG file is parsed) and build facets from what the task has in hand: its rendered arguments
and the result ``execute`` kept with ``keep_for_lineage``. Without ``apache-airflow-providers-openlineage``
nothing calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


class LineageMixin:
    """``get_openlineage_facets_on_start/complete/failure`` for the provider's operators."""

    _lineage_kept: tuple[tuple[str, int, int], Any] | None = None

    def keep_for_lineage(self, context: Mapping[str, Any], value: Any) -> Any:
        """Keep this try's result (or decision) for the completion facets; returns ``value``."""
        self._lineage_kept = (_try_of(context["ti"]), value)
        return value

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_agent_provider.lineage.operators import lineage_of

        return lineage_of(self, None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_agent_provider.lineage.operators import lineage_of

        return lineage_of(self, self._kept(task_instance))

    # A failed try's facets are built alike, from what it kept (a failed remediation keeps its iterations).
    get_openlineage_facets_on_failure = get_openlineage_facets_on_complete

    def _kept(self, task_instance: Any) -> Any:
        """What this try kept; None for another try's (a DAG object reused by ``dag.test()``)."""
        kept = self._lineage_kept
        if kept is None or kept[0] != _try_of(task_instance):
            return None
        return kept[1]


def _try_of(ti: Any) -> tuple[str, int, int]:
    map_index = getattr(ti, "map_index", -1)
    return str(ti.run_id), int(getattr(ti, "try_number", 0) or 0), -1 if map_index is None else int(map_index)
