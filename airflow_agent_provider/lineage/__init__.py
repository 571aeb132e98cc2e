"""OpenLineage for the provider's operators: dataset names, facets and the decision run facets.

The operators' ``get_openlineage_facets_on_start/complete/failure`` methods delegate here
(``lineage.operators``); nothing in this package is imported when a DAG file is parsed, and
OpenLineage classes are imported only while the OpenLineage listener asks for facets. It needs the
optional extra ``airflow-agent-provider[openlineage]`` (``apache-airflow-providers-openlineage``).

How datasets are named (OpenLineage's naming conventions):

- a staged dataset is named after its *origin*: the SQL tables, file or HTTP endpoint it was
  extracted from (``DatasetRef.origins``, recorded by extract when lineage is on), so validation
  results and column lineage land on the source a catalog already knows;
- what a stage makes itself (a transform's output) has a stable name under the staging root
  without the run folder, ``<root>/<dag_id>/<task_id>/<dataset>``: one dataset across runs;
- warehouse tables in their connection's namespace (``postgres://host:port`` + ``db.schema.table``,
  ``sqlite://<path>`` + ``table``).
"""

from __future__ import annotations


def enabled() -> bool:
    """The OpenLineage provider is installed and configured (a transport is set and it is not disabled)."""
    try:
        from airflow.providers.openlineage import conf
    except ImportError:
        return False
    return not conf.is_disabled()
