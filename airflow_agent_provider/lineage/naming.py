"""Dataset names by OpenLineage's naming conventions: SQL tables, files, HTTP endpoints, staged data.

Plain values in, ``DatasetOrigin`` out. Connections are Airflow ``Connection`` objects (read for host,
port, database and type; never for credentials). A name never carries a login, a password or a
query string: an HTTP source is named by its scheme, host, port and path only.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

from airflow_agent_provider.contracts import DatasetOrigin, FileSource, HttpSource, SqlSource
from airflow_agent_provider.engines.staging import safe_segment

log = logging.getLogger(__name__)

# Dialects whose tables default to the ``public`` schema (not asked of the database: no round trip).
_POSTGRES_DIALECTS = ("postgres", "redshift")
LOCAL_NAMESPACE = "file"


def source_origins(source: SqlSource | HttpSource | FileSource, connection: Any = None) -> list[DatasetOrigin]:
    """The datasets a source reads: the tables of its query, its file, or its endpoint.

    :param connection: the source's Airflow connection (SQL sources), or its base URL (HTTP sources).
    """
    if isinstance(source, SqlSource):
        return sql_origins(connection, source.query)
    if isinstance(source, HttpSource):
        return [http_origin(str(connection or ""), source.endpoint)]
    return [uri_origin(source.path)]


def sql_origins(connection: Any, query: str) -> list[DatasetOrigin]:
    """The tables ``query`` reads, in the connection's namespace; [] when the database or query is unknown."""
    where = sql_namespace(connection)
    if where is None:
        return []
    namespace, database, schema, dialect = where
    import openlineage_sql

    try:
        parsed = openlineage_sql.parse([query], dialect=dialect, default_schema=schema)
    except Exception as err:  # the Rust parser raises its own error types
        log.warning("OpenLineage: cannot parse the query of %s for its tables: %s", connection.conn_id, err)
        return []
    tables = parsed.in_tables if parsed is not None else []
    names = sorted({_qualified(t.database or database, t.schema, t.name) for t in tables})
    return [DatasetOrigin(namespace=namespace, name=name) for name in names]


def sql_namespace(connection: Any) -> tuple[str, str | None, str | None, str] | None:
    """(namespace, default database, default schema, parser dialect) of a SQL connection, or None."""
    kind = (getattr(connection, "conn_type", "") or "").lower()
    if kind == "sqlite":
        return f"sqlite://{sqlite_path(connection)}", None, None, "sqlite"
    hook = connection.get_hook()
    info_of = getattr(hook, "get_openlineage_database_info", None)
    info = info_of(connection) if callable(info_of) else None
    if info is None:
        log.info("OpenLineage: connection %s (%s) names no datasets", connection.conn_id, kind or "no type")
        return None
    dialect = hook.get_openlineage_database_dialect(connection)
    namespace = f"{info.scheme}://{info.authority}" if info.authority else info.scheme
    schema = "public" if dialect in _POSTGRES_DIALECTS else None
    return namespace, info.database, schema, dialect


def table_origin(connection: Any, table: str) -> DatasetOrigin | None:
    """A warehouse table (``table`` or ``schema.table``) in its connection's namespace, or None."""
    where = sql_namespace(connection)
    if where is None:
        return None
    namespace, database, default_schema, _ = where
    schema, _, name = table.rpartition(".")
    return DatasetOrigin(namespace=namespace, name=_qualified(database, schema or default_schema, name))


def sqlite_path(connection: Any) -> str:
    """The absolute path of a SQLite connection's database file, read as SqliteHook reads its URI.

    ``sqlite:////abs/events.db`` keeps the path in the schema, ``{"host": "/abs/events.db"}`` in the host.
    """
    host, schema = connection.host or "", connection.schema or ""
    path = f"{host.rstrip('/')}/{schema.lstrip('/')}" if host and schema else host or schema
    return path if path in ("", ":memory:") else os.path.abspath(path)


def http_origin(base_url: str, endpoint: str) -> DatasetOrigin:
    """``scheme://host[:port]`` and the endpoint's path: no login, password or query string."""
    endpoint = endpoint or ""
    url = endpoint if "://" in endpoint else base_url.rstrip("/") + "/" + endpoint.lstrip("/")
    parts = urlsplit(url)
    authority = parts.hostname or ""
    if parts.port:
        authority = f"{authority}:{parts.port}"
    return DatasetOrigin(namespace=f"{parts.scheme or 'http'}://{authority}", name=parts.path or "/")


def uri_origin(uri: str) -> DatasetOrigin:
    """A file by absolute path (namespace ``file``) or an object by bucket and key (``s3://bucket`` + key).

    ``s3://<conn_id>@bucket/key`` (Airflow's ObjectStoragePath form) names the bucket without the conn id.
    """
    if "://" not in uri:
        return DatasetOrigin(namespace=LOCAL_NAMESPACE, name=os.path.abspath(uri))
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.scheme == "file":
        local = host in ("", "localhost")
        return DatasetOrigin(namespace=LOCAL_NAMESPACE if local else f"file://{host}", name=parts.path)
    return DatasetOrigin(namespace=f"{parts.scheme}://{host}", name=parts.path.lstrip("/"))


def staged_origin(uri: str, dag_id: str) -> DatasetOrigin:
    """The name of staged data across runs: its staging URI without the run's folder.

    ``<root>/<dag>/<run>/<task>[/map_<i>]/<dataset>`` is named ``<root>/<dag>/<task>[/map_<i>]/<dataset>``,
    so each run's copy is one more version of the same dataset, not a new dataset per run.

    :param dag_id: the DAG of the run that staged it (its folder locates the run's folder after it).

    A warehouse staging table ``postgres://<conn_id>/<schema>.aap_<run>_<task>_<dataset>`` is named
    ``<schema>.aap_<task>_<dataset>`` in namespace ``postgres://<conn_id>`` (the run's hash left out).
    """
    from airflow_agent_provider.engines import warehouse_staging

    if warehouse_staging.is_table_uri(uri):
        table = warehouse_staging.StagedTable.parse(uri)
        name, prefix = table.table, warehouse_staging.TABLE_PREFIX
        if name.startswith(prefix) and len(name) > len(prefix) + 11:
            name = prefix + name[len(prefix) + 11 :]
        return DatasetOrigin(namespace=f"{table.scheme}://{table.conn_id}", name=f"{table.schema}.{name}")
    segments = uri.rstrip("/").split("/")
    for run_at in (-3, -4):  # <run>/<task>/<dataset>, or <run>/<task>/map_<i>/<dataset>
        mapped = run_at == -4 and segments[-2].startswith("map_")
        if len(segments) > -run_at + 1 and segments[run_at - 1] == safe_segment(dag_id) and (run_at == -3 or mapped):
            del segments[run_at]
            break
    return uri_origin("/".join(segments))


def _qualified(*parts: str | None) -> str:
    return ".".join(part for part in parts if part)
