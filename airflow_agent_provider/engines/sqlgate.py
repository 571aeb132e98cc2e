"""The one gate every transformation query passes before it runs, whoever wrote it: a person or Claude.

A query passes when DuckDB's own parser reads it as exactly one SELECT (``WITH``, set operations
and ``FROM``-first included) that reads only what it is given, by name:

- **tables**: the given tables (the transform's inputs and earlier steps) and the query's own CTEs,
  unqualified or in schema ``main``; never a file path, another schema or another database;
- **table functions**: only :data:`TABLE_FUNCTIONS` (``range``, ``generate_series``, ``unnest``),
  which make rows and read nothing;
- **functions**: any, except those that read files, settings, the environment or other databases
  (:data:`FORBIDDEN_FUNCTIONS`, and names starting ``read_``, ``duckdb_``, ``pragma_`` or ending
  ``_scan``, ``_query``, ``_attach``).

Everything else is refused with :class:`UnsafeSQL` naming why: DDL, DML, ``COPY``, ``ATTACH``,
``PRAGMA``, ``SET``, ``INSTALL``, ``LOAD``, ``EXPORT``, ``CALL``, ``DESCRIBE``/``SHOW``/``SUMMARIZE``.
It is the first of two locks: the transform runs the query in a DuckDB with external access off and
its configuration locked (``engines.transform.isolated_connection``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.exceptions import UnsafeSQL

if TYPE_CHECKING:
    import duckdb

TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
"""The table functions a query may call: they make rows, they read nothing."""
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "glob", "query", "query_table", "getenv", "current_setting", "sniff_csv", "st_read",
        "http_get", "http_post", "load_extension", "which_secret", "parquet_metadata", "parquet_schema",
        "parquet_file_metadata", "parquet_kv_metadata", "iceberg_metadata", "iceberg_snapshots",
    }
)  # fmt: skip
_FORBIDDEN_PREFIXES = ("read_", "duckdb_", "pragma_")
_FORBIDDEN_SUFFIXES = ("_scan", "_query", "_attach")
_PATH_CHARS = re.compile(r"[./\\:]")
"""A table name with these could be a file DuckDB scans in its place (``FROM 'x.parquet'``)."""
_ONE_SELECT = "the SQL must be a single SELECT query"


def check_sql(sql: str, tables: Iterable[str], con: duckdb.DuckDBPyConnection | None = None) -> str:
    """The query (without a trailing semicolon) when it passes the gate; else :class:`UnsafeSQL` saying why.

    :param sql: the query, in DuckDB's dialect.
    :param tables: the tables it may read (case-insensitive).
    :param con: the DuckDB that parses it (default: a cursor on the process's shared one).
    """
    from airflow_agent_provider.engines.staging import shared_cursor

    if not (sql or "").strip().rstrip(";").strip():
        raise UnsafeSQL("the SQL is empty")
    own = con is None
    con = con or shared_cursor()
    try:
        query = _single_select(con, sql)
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    finally:
        if own:
            con.close()
    if tree.get("error"):
        raise UnsafeSQL(f"{_ONE_SELECT}: {tree.get('error_message')}")
    allowed = sorted({t.lower() for t in tables})
    refused = next(_refusals(tree, set(allowed), allowed), None)
    if refused:
        raise UnsafeSQL(refused)
    return query


def _single_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as err:
        raise UnsafeSQL(f"the SQL does not parse as DuckDB: {str(err).splitlines()[0]}") from err
    if len(statements) != 1:
        raise UnsafeSQL(f"{_ONE_SELECT}: expected exactly one statement, found {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise UnsafeSQL(f"{_ONE_SELECT}; only a SELECT may run, not {statements[0].type.name}")
    return str(statements[0].query).strip().rstrip(";").strip()


def _refusals(node: Any, visible: set[str], allowed: list[str]) -> Iterator[str]:
    """Why each part of a ``json_serialize_sql`` tree is refused, outermost first."""
    if isinstance(node, list):
        for item in node:
            yield from _refusals(item, visible, allowed)
        return
    if not isinstance(node, dict):
        return
    visible = visible | {str(cte["key"]).lower() for cte in (node.get("cte_map") or {}).get("map", [])}
    refused = _refusal(node, visible, allowed)
    if refused:
        yield refused
    for value in node.values():
        yield from _refusals(value, visible, allowed)


def _refusal(node: dict[str, Any], visible: set[str], allowed: list[str]) -> str | None:
    kind = node.get("type")
    if kind == "TABLE_FUNCTION":
        name = str(node["function"].get("function_name")).lower()
        return None if name in TABLE_FUNCTIONS else f"table function {name}() is not allowed: read the tables by name"
    if kind == "SHOW_REF":
        return "DESCRIBE, SHOW and SUMMARIZE are not allowed in a query"
    if kind == "BASE_TABLE":
        return _table_refusal(node, visible, allowed)
    name = str(node.get("function_name") or "").lower()
    if node.get("class") == "FUNCTION" and _forbidden_function(name):
        return f"function {name}() is not allowed: it reads files, settings, the environment or other databases"
    return None


def _table_refusal(node: dict[str, Any], visible: set[str], allowed: list[str]) -> str | None:
    table = str(node.get("table_name") or "")
    if node.get("catalog_name") or str(node.get("schema_name") or "main").lower() != "main":
        dotted = ".".join(str(part) for part in node.get("qualified_name", {}).get("path", [table]))
        return f"qualified table {dotted!r} is not allowed: read the staged tables by name"
    if table.lower() not in visible or _PATH_CHARS.search(table):
        known = ", ".join(allowed) or "none"
        return f"table {table!r} is not allowed: it is not one of the staged tables or earlier steps ({known})"
    return None


def _forbidden_function(name: str) -> bool:
    return name in FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES) or name.endswith(_FORBIDDEN_SUFFIXES)
