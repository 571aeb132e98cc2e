"""ExtractOperator: pull SQL, HTTP and file sources into staged Parquet; XCom gets counts, never rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_agent_provider.operators.base import StageOperator
from airflow_agent_provider.operators.errors import stage_errors

if TYPE_CHECKING:
    from airflow.sdk import Context
    from sqlalchemy.engine import Engine

    from airflow_agent_provider.contracts import StageResult
    from airflow_agent_provider.engines.extract import HttpEndpoint


class ExtractOperator(StageOperator):
    """Extract each source into a staged dataset named after it (Parquet, or a warehouse table with
    ``staging_conn_id``), sources running concurrently.

    Returns the ``extract`` stage result: per dataset its URI, row count, columns and checksum; metrics
    ``sources_extracted``, ``total_rows``, ``metadata.extraction_duration_seconds`` and
    ``metadata.source_checksums``. Map it over sources with
    ``ExtractOperator.partial(task_id="extract").expand(sources=[[a], [b]])``.

    :param sources: list of source dicts, each with ``name`` and ``type``: ``sql`` (``conn_id``, ``query``,
        ``parameters``), ``http`` (``conn_id``, ``endpoint``, ``params``, ``headers``, ``pagination``,
        ``records_path``) or ``file`` (``path``, ``format``: csv, parquet, json or jsonl); ``database`` and
        ``api`` (the seed articles' names) mean ``sql`` and ``http``. Templated as a whole, so queries, paths
        and params can use the data interval.
    :param expected_row_count_min: a source with fewer rows fails the task (a source may override it).
    :param max_workers: how many sources are extracted at the same time.
    :param staging_root: where staged data goes (default ``[agent_provider] staging_root``,
        ``$AGENT_PROVIDER_STAGING_ROOT`` or ``$AIRFLOW_HOME/staging``). Templated.
    :param staging_conn_id: a PostgreSQL connection to stage in instead (warehouse-native staging): each
        source becomes a run-scoped table there, dataset URI ``postgres://<conn_id>/<schema>.<table>``; a
        SQL source on that database runs there as ``CREATE TABLE ... AS`` (docs/operating.md). Templated.
    :param staging_schema: the schema of those tables (default ``agent_staging``, created when missing). Templated.
    """

    template_fields: Sequence[str] = ("sources", "staging_root", "staging_conn_id", "staging_schema")
    template_fields_renderers: ClassVar[dict[str, str]] = {"sources": "json"}
    ui_color = "#d6eaf8"
    stage = "extract"

    def __init__(
        self,
        *,
        sources: list[dict[str, Any]],
        expected_row_count_min: int = 1,
        max_workers: int = 4,
        staging_root: str | None = None,
        staging_conn_id: str | None = None,
        staging_schema: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staging_conn_id = staging_conn_id
        self.staging_schema = staging_schema
        self.sources = sources
        self.expected_row_count_min = expected_row_count_min
        self.max_workers = max_workers
        self.staging_root = staging_root

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_agent_provider.contracts import parse_sources
        from airflow_agent_provider.engines.extract import extract_sources
        from airflow_agent_provider.operators import _common
        from airflow_agent_provider.settings import configure_engines

        configure_engines()
        scope, started = _common.run_scope(context), datetime.now(timezone.utc)
        engines = _Engines()
        with stage_errors(self.task_id), engines:
            warehouse = _common.warehouse_staging_for(scope, self.staging_conn_id, self.staging_schema)
            result = extract_sources(
                parse_sources(self.sources),
                warehouse=warehouse,
                dataset_uri=scope.uri_factory(self.staging_root) if warehouse is None else warehouse.uri,
                sql_engine=engines,
                http_endpoint=http_endpoint,
                expected_row_count_min=self.expected_row_count_min,
                max_workers=self.max_workers,
                log=_common.progress_logger(self.log, self.task_id),
            )
        result.task_id, result.started_at = self.task_id, result.started_at or started
        _record_origins(result, self.sources, self.log)
        self.log.info(
            "Extracted %s rows from %s source(s) in %.2fs: %s",
            result.metrics.get("total_rows"),
            len(result.datasets),
            result.duration_s,
            {name: ref.row_count for name, ref in result.datasets.items()},
        )
        return self.keep_for_lineage(context, result.model_dump(mode="json"))


def _record_origins(result: StageResult, sources: list[dict[str, Any]], log: Any) -> None:
    """With OpenLineage on, name each dataset's source datasets in its ``origins`` (for later stages' lineage)."""
    from airflow_agent_provider import lineage

    if not lineage.enabled():
        return
    from airflow_agent_provider.lineage.operators import extract_origins

    try:
        origins = extract_origins(sources)
    except Exception as err:  # lineage never fails an extract
        log.warning("OpenLineage: could not name the sources' datasets: %s", err)
        return
    for name, ref in result.datasets.items():
        ref.origins = origins.get(name, [])


class _Engines:
    """A SQLAlchemy engine per connection id, shared by the sources of one task and disposed after it."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def __call__(self, conn_id: str) -> Engine:
        """The connection's engine, opened read-only (``engines.sources.sql_readonly``)."""
        from airflow_agent_provider.engines.sources.sql_readonly import read_only_engine
        from airflow_agent_provider.operators._common import sql_engine

        with self._lock:
            if conn_id not in self._engines:
                self._engines[conn_id] = read_only_engine(sql_engine(conn_id))
            return self._engines[conn_id]

    def __enter__(self) -> _Engines:
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self._engines.values():
            engine.dispose()


def http_endpoint(conn_id: str) -> HttpEndpoint:
    """What ``HttpHook`` builds for an HTTP connection: its base URL, and a session with the connection's
    auth, headers (the extras that are no request options), TLS verification, certificate and proxies."""
    from urllib.parse import urlsplit

    from airflow.providers.http.hooks.http import HttpHook

    from airflow_agent_provider.engines.extract import HttpEndpoint

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    session = hook.get_conn()
    if not urlsplit(hook.base_url).hostname:
        raise ValueError(f"HTTP connection {conn_id!r} has no host")
    if isinstance(session.verify, str) and session.verify.strip().lower() in ("false", "0", "no"):
        session.verify = False  # a connection URI's extras are text; HttpHook would read "false" as a CA bundle path
    return HttpEndpoint(base_url=hook.base_url, session=session)
