"""SQL from a description: written by Claude once, checked with sqlglot, cached as a reviewable file.

``check_sql`` is the gate every generated (or cached, possibly hand-edited) query passes before it
runs: exactly one read-only query (SELECT, WITH, UNION/INTERSECT/EXCEPT) in DuckDB's dialect whose
table references are only the staged tables and its own CTEs, with no table functions, no
file/network/settings functions and no DDL, DML, COPY, ATTACH, PRAGMA, SET, INSTALL, LOAD, CALL.
The transform engine runs it in an isolated DuckDB besides (external access off), so this is the
first of two locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.plans import PlanCache
from airflow_agent_provider.agents.prompts import MAX_DESCRIPTION_CHARS, SQL_SYSTEM, clip, data_block
from airflow_agent_provider.contracts import Transformation, Usage
from airflow_agent_provider.exceptions import ModelCallError, UnsafeSQL

if TYPE_CHECKING:
    from sqlglot import exp

log = logging.getLogger(__name__)

Schemas = Mapping[str, Mapping[str, str]]
"""table -> {column: type}"""

_FORBIDDEN_NODES = (
    "Create", "Drop", "Insert", "Update", "Delete", "Merge", "Alter", "TruncateTable", "Copy", "Attach",
    "Detach", "Install", "Pragma", "Set", "Command", "Use", "Into", "Describe", "Summarize", "Show",
    "Transaction", "Commit", "Rollback", "LoadData", "Export", "Cache", "Uncache", "Refresh", "Grant",
    "Revoke", "Analyze", "Kill",
)  # fmt: skip
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "glob", "query", "query_table", "getenv", "current_setting", "sniff_csv", "st_read",
        "http_get", "http_post", "load_extension", "which_secret", "parquet_metadata", "parquet_schema",
        "parquet_file_metadata", "parquet_kv_metadata", "iceberg_metadata", "iceberg_snapshots",
    }
)  # fmt: skip
_FORBIDDEN_PREFIXES = ("read_", "duckdb_", "pragma_")
_FORBIDDEN_SUFFIXES = ("_scan", "_query", "_attach")


def check_sql(sql: str, allowed_tables: Iterable[str]) -> str:
    """The query, stripped of a trailing semicolon, when it is safe to run; else ``UnsafeSQL`` naming why.

    :param sql: the query to check (DuckDB dialect).
    :param allowed_tables: the staged tables it may read (case-insensitive).
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    text = (sql or "").strip().rstrip(";").strip()
    if not text:
        raise UnsafeSQL("the SQL is empty")
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except ParseError as err:
        raise UnsafeSQL(f"the SQL does not parse as DuckDB: {str(err).splitlines()[0]}") from err
    if len(statements) != 1:
        raise UnsafeSQL(f"expected exactly one statement, found {len(statements)}")
    root = statements[0]
    if not isinstance(root, exp.Select | exp.SetOperation | exp.Subquery):
        raise UnsafeSQL(f"only a SELECT query may run, not {root.key.upper()}")
    _check_nodes(root)
    _check_tables(root, {t.lower() for t in allowed_tables})
    return text


def _check_nodes(root: exp.Expression) -> None:
    from sqlglot import exp

    forbidden = tuple(getattr(exp, name) for name in _FORBIDDEN_NODES if hasattr(exp, name))
    for node in root.walk():
        if isinstance(node, forbidden):
            raise UnsafeSQL(f"{node.key.upper()} is not allowed in a transformation query")
        if isinstance(node, exp.Func) and _forbidden_function(_function_name(node)):
            raise UnsafeSQL(f"function {_function_name(node)}() reads files, settings or other databases")


def _function_name(node: exp.Func) -> str:
    from sqlglot import exp

    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _forbidden_function(name: str) -> bool:
    return name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES) or name.endswith(_FORBIDDEN_SUFFIXES)


def _check_tables(root: exp.Expression, allowed: set[str]) -> None:
    from sqlglot import exp

    ctes = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    for table in root.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise UnsafeSQL(f"table function {table.this.sql(dialect='duckdb')[:60]} is not allowed")
        if table.args.get("db") or table.args.get("catalog"):
            raise UnsafeSQL(f"qualified table {table.sql(dialect='duckdb')!r} is not allowed; use the staged tables")
        if table.name.lower() not in allowed | ctes:
            known = ", ".join(sorted(allowed)) or "none"
            raise UnsafeSQL(f"table {table.name!r} is not one of the staged tables ({known})")


class SqlAnswer(BaseModel):
    """What Claude answers when writing SQL (JSON schema title SqlAnswer)."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=20_000, description="one DuckDB SELECT query, no trailing semicolon")
    explanation: str = Field(default="", max_length=500)


def sql_prompt(transformation: Transformation, schemas: Schemas) -> str:
    tables = {str(clip(t, 64)): {str(clip(c, 64)): clip(k, 32) for c, k in cols.items()} for t, cols in schemas.items()}
    description = clip(transformation.description or "", MAX_DESCRIPTION_CHARS * 5)
    return (
        f"Write the DuckDB query for the transformation {transformation.name!r}.\n\n"
        f"What it must do (from the DAG author): {description}\n\n"
        f"Tables it may read (table: column: type):\n{data_block(tables)}\n\n"
        "Answer with sql and a one-sentence explanation."
    )


def write_sql(claude: Claude, transformation: Transformation, schemas: Schemas) -> tuple[str, Usage]:
    """Ask Claude for the SQL of a described transformation (not yet checked: see ``check_sql``).

    :raises ModelCallError: no valid answer within the policy.
    """
    if not transformation.description:
        raise ValueError(f"transformation {transformation.name!r} has no description to write SQL from")
    answer = claude.ask("sql", system=SQL_SYSTEM, user=sql_prompt(transformation, schemas), output=SqlAnswer)
    return answer.value.sql.strip().rstrip(";").strip(), answer.usage


class SqlWriter:
    """``(transformation, schemas) -> sql`` for the transform engine: the plan cache first, then Claude.

    Every query, cached or new, passes ``check_sql`` before it is returned. Claude's client is built
    only on a cache miss, so cached plans run without credentials. ``usage`` adds up the calls made.

    :param claude: who writes the SQL (model, bounds and the run's budget included).
    :param cache: where plans are kept (None: no cache, every call asks Claude).
    """

    def __init__(self, claude: Claude, *, cache: PlanCache | None) -> None:
        self.claude, self.cache = claude, cache
        self.usage = Usage()
        self.cache_hits: list[str] = []

    def __call__(self, transformation: Transformation, schemas: Schemas) -> str:
        description = transformation.description or ""
        cached = self.cache.get(transformation.name, description, schemas) if self.cache else None
        if cached is not None:
            self.cache_hits.append(transformation.name)
            log.info("Plan for %s read from the plan cache (no model call)", transformation.name)
            return check_sql(cached, schemas)
        try:
            sql, usage = write_sql(self.claude, transformation, schemas)
        except ModelCallError as err:
            self.usage = self.usage + (err.usage or Usage())
            raise
        self.usage = self.usage + usage
        checked = check_sql(sql, schemas)
        if self.cache is not None:
            model = self.claude.model_for("sql")
            path = self.cache.put(transformation.name, description, schemas, checked, model=model)
            log.info("Plan for %s written by %s and saved to %s", transformation.name, model, path)
        return checked
