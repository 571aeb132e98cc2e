"""DuckDB-dialect SQL run in the warehouse: the transpiler, and a cursor the DuckDB-path engines can use.

The stages build their SQL in DuckDB's dialect with ``$name`` parameters. In warehouse mode the
same text goes through :func:`to_warehouse`: parameters become literals in the syntax tree (values
never become SQL text by string formatting), the few DuckDB functions sqlglot does not carry over
are rewritten (``regexp_full_match``, ``isnan``, ``GROUP BY ALL``, subqueries without an alias),
and sqlglot writes the warehouse's dialect. :class:`WarehouseCursor` exposes the small part of a
DuckDB connection the validation uses (``execute(...).fetchall()``, ``extract_statements``), so the
rule checks are one implementation for both stagings; a warehouse error is raised as
:class:`WarehouseSqlError`, a ``duckdb.Error``, so those checks report it exactly as DuckDB's.
Through it ``TRY_CAST`` and ``try_strptime`` keep DuckDB's NULL-on-failure (``engines.warehouse_casts``).

The quarantine and the fix plans stage their outputs with :func:`stage_query` (``CREATE UNLOGGED TABLE ... AS``
in the cursor's session, as a run-scoped staging table) and rules read other staging tables through
:func:`add_views`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.engines.warehouse_casts import forgiving
from airflow_agent_provider.exceptions import UnsafeSQL

if TYPE_CHECKING:
    import sqlalchemy
    from sqlglot import exp

    from airflow_agent_provider.contracts import DatasetRef

# Functions a warehouse predicate or transformation may not call: they read files, settings or
# other databases, or change the session (PostgreSQL's names; the DuckDB gate covers DuckDB's).
FORBIDDEN_PREFIXES = (
    "pg_",
    "lo_",
    "dblink",
    "set_config",
    "current_setting",
    "query_to_xml",
    "table_to_xml",  # the *_to_xml family reads any table, schema or database by name
    "schema_to_xml",
    "database_to_xml",
    "cursor_to_xml",
    "nextval",  # sequences: a side effect outside the stage's own tables
    "setval",
    "txid_",
    "binary_upgrade",
)


@functools.cache
def _error_class() -> type[Exception]:
    import duckdb

    doc = "The warehouse refused a statement (a ``duckdb.Error``, so the DuckDB-path handlers apply)."
    return type("WarehouseSqlError", (duckdb.Error,), {"__doc__": doc, "__module__": __name__})


def WarehouseSqlError(message: str) -> Exception:
    """The error a refused warehouse statement raises: a ``duckdb.Error`` (DuckDB is imported only when needed)."""
    return _error_class()(message)


def to_warehouse(
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    dialect: str = "postgres",
    read: str = "duckdb",
    tables: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """``sql`` (in ``read``'s dialect, ``$name`` parameters bound from ``params``) written in ``dialect``.

    :param tables: name (lower case) -> (schema, table): unqualified references to these names (not
        the query's own CTEs) read that table, under their old name as alias; any other table is refused.
    """
    tree = _tree(sql, params, read)
    if tables is not None:
        _qualify(tree, tables)
    return str(tree.sql(dialect=dialect))


def to_warehouse_safe(
    sql: str, params: Mapping[str, Any] | None = None, *, dialect: str = "postgres"
) -> tuple[str, dict[str, str]]:
    """:func:`to_warehouse` with DuckDB's forgiving conversions kept: ``TRY_CAST`` and ``try_strptime``
    give NULL for a value that does not convert (PostgreSQL's cast raises), through session functions
    (``pg_temp``) that catch the error. Returns the SQL and the functions it calls (name -> DDL)."""
    functions: dict[str, str] = {}
    tree = _tree(sql, params, "duckdb").transform(lambda node: forgiving(node, dialect, functions))
    return str(tree.sql(dialect=dialect)), functions


def _tree(sql: str, params: Mapping[str, Any] | None, read: str) -> Any:
    import sqlglot
    from sqlglot import exp

    try:
        trees = sqlglot.parse(sql, read=read)
    except sqlglot.errors.ParseError as err:
        raise UnsafeSQL(f"the SQL does not parse as {read}: {str(err).splitlines()[0]}") from err
    if len(trees) != 1 or trees[0] is None:
        raise UnsafeSQL(f"expected exactly one statement, found {len(trees)}")
    bound = trees[0].transform(lambda node: _bind(node, params or {}))  # values first: rewrites see literals
    tree: Any = bound.transform(_rewrite)
    for select in tree.find_all(exp.Select):
        _expand_group_by_all(select)
    return tree


def _qualify(tree: Any, tables: Mapping[str, tuple[str, str]]) -> None:
    """Point the query's table names at the staging tables; refuse a table that is none of them."""
    from sqlglot import exp

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if isinstance(table.this, exp.Func) or (not table.db and name in ctes):
            continue  # a table function (the gate allows only its own few) or the query's own CTE
        if table.db or table.catalog or name not in tables:
            raise UnsafeSQL(
                f"table {table.sql()!r} is not allowed: it is not one of the staged tables or earlier steps"
            )
        schema, real = tables[name]
        alias = table.alias or table.name
        table.set("this", exp.to_identifier(real, quoted=True))
        table.set("db", exp.to_identifier(schema, quoted=True))
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))


def forbidden_functions(sql: str, *, read: str = "duckdb") -> list[str]:
    """Functions in ``sql`` the warehouse must not run (files, settings, other databases)."""
    import sqlglot
    from sqlglot import exp

    names = set()
    for tree in sqlglot.parse(sql, read=read):
        if tree is None:
            continue
        for func in tree.find_all(exp.Func):
            name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
            if name.startswith(FORBIDDEN_PREFIXES):
                names.add(name)
    return sorted(names)


def _bind(node: exp.Expression, params: Mapping[str, Any]) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Placeholder) and node.name in params:
        return _literal(params[node.name])
    return node


def _rewrite(node: exp.Expression) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.RegexpFullMatch):  # whole-string match: anchor the pattern
        pattern = node.expression
        anchored = (
            exp.Literal.string(f"^(?:{pattern.this})$")
            if isinstance(pattern, exp.Literal)
            else exp.DPipe(
                this=exp.DPipe(this=exp.Literal.string("^(?:"), expression=pattern), expression=exp.Literal.string(")$")
            )
        )
        return exp.RegexpLike(this=node.this, expression=anchored)
    if isinstance(node, exp.Round) and node.args.get("decimals") is not None and not node.meta.get("aap"):
        # PostgreSQL rounds to decimals only as numeric; DuckDB's round of a double is a double
        rounded = exp.Round(this=exp.cast(node.this, "DECIMAL"), decimals=node.args["decimals"])
        rounded.meta["aap"] = True
        return exp.cast(rounded, "DOUBLE")
    if isinstance(node, exp.IsNan):
        return exp.paren(exp.EQ(this=node.this, expression=exp.cast(exp.Literal.string("NaN"), "DOUBLE")))
    if isinstance(node, exp.Subquery) and not node.alias and isinstance(node.parent, exp.From | exp.Join):
        # PostgreSQL wants an alias; its place in the tree names it (two alike subqueries differ in place)
        return exp.alias_(node, f"aap_sub_{_place(node)}", table=True)
    return node


def _place(node: exp.Expression) -> str:
    """Where ``node`` stands in its tree, as the path of argument names and indexes from the root."""
    steps, at = [], node
    while at.parent is not None:
        steps.append(f"{at.arg_key}{at.index or 0}")
        at = at.parent  # type: ignore[assignment]
    return hashlib.sha256("/".join(reversed(steps)).encode()).hexdigest()[:8]


def _literal(value: Any) -> Any:
    """A bound value as a typed literal (dates and times cast, so comparisons keep their type)."""
    from datetime import date, datetime

    from sqlglot import exp

    if isinstance(value, datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), kind)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    return exp.convert(value)


def _expand_group_by_all(select: exp.Select) -> None:
    """``ORDER BY ALL`` -> every select position; ``GROUP BY ALL`` -> the positions that aggregate nothing."""
    from sqlglot import exp

    order: Any = select.args.get("order")
    ordered = order.expressions if order is not None else []
    if len(ordered) == 1 and isinstance(ordered[0].this, exp.Var) and ordered[0].this.name.upper() == "ALL":
        template = ordered[0]
        by_all = [template.copy() for _ in select.expressions]
        for i, item in enumerate(by_all):
            item.set("this", exp.Literal.number(i + 1))
        order.set("expressions", by_all)
    group = select.args.get("group")
    if group is None or not group.args.get("all"):
        return
    positions = [
        exp.Literal.number(i + 1)
        for i, item in enumerate(select.expressions)
        if not item.find(exp.AggFunc) and not isinstance(item.unalias(), exp.Literal)
    ]
    select.set("group", exp.Group(expressions=positions) if positions else None)


class WarehouseCursor:
    """A warehouse session speaking the part of DuckDB's connection API the validation uses.

    One autocommit connection, reset when opened (a temporary view lives as long as the cursor);
    ``read_only`` makes every later transaction read-only (custom predicates run there, as in DuckDB's locked sandbox).
    """

    def __init__(self, engine: sqlalchemy.engine.Engine, *, dialect: str = "postgres", guarded: bool = False) -> None:
        self.dialect = dialect
        self.guarded = guarded  # refuse statements that call functions reading files, settings or other databases
        self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        raw: Any = self._conn.connection.dbapi_connection
        self._raw = raw
        self._cursor: Any = self._raw.cursor()
        self._rows: list[tuple[Any, ...]] = []
        self._functions: set[str] = set()
        try:  # a pooled session may hold an earlier cursor's temporary views, functions or read-only setting
            self.native("DISCARD ALL")
        except BaseException:
            self._conn.close()
            raise

    def native(self, sql: str) -> WarehouseCursor:
        """Run SQL already in the warehouse's dialect."""
        try:
            self._cursor.execute(sql)
        except Exception as err:
            raise WarehouseSqlError(_first_line(err)) from err
        self._rows = [tuple(r) for r in self._cursor.fetchall()] if self._cursor.description else []
        return self

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> WarehouseCursor:
        """Run DuckDB-dialect SQL with ``$name`` parameters, transpiled for the warehouse."""
        return self.native(self.prepare(sql, params))

    def prepare(self, sql: str, params: Mapping[str, Any] | None = None) -> str:
        """DuckDB-dialect SQL as the warehouse runs it, the session functions it calls created first."""
        try:
            if self.guarded and (refused := forbidden_functions(sql)):
                raise UnsafeSQL(f"function {refused[0]}() is not allowed in the warehouse")
            functions: dict[str, str] = {}
            if self.guarded:  # read-only: no session function can be created; TRY_CAST is a plain CAST there
                native = to_warehouse(sql, params, dialect=self.dialect)
            else:
                native, functions = to_warehouse_safe(sql, params, dialect=self.dialect)
        except UnsafeSQL as err:
            raise WarehouseSqlError(str(err)) from err
        for name, ddl in functions.items():
            if name not in self._functions:
                self.native(ddl)
                self._functions.add(name)
        return native

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def extract_statements(self, sql: str) -> list[Any]:
        import sqlglot

        try:
            return [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
        except sqlglot.errors.ParseError as err:
            raise WarehouseSqlError(str(err).splitlines()[0]) from err

    def read_only(self) -> WarehouseCursor:
        self.native("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return self

    def close(self) -> None:
        """Return the session to the pool without its temporary views (which would hold off a DROP of their
        tables, e.g. by retention) and settings."""
        with contextlib.suppress(Exception):  # a broken session is closed all the same
            self._cursor.execute("DISCARD ALL")
        try:
            self._cursor.close()
        finally:
            self._conn.close()


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def open_data_view(
    uri: str, *, sandboxed: bool = False, others: Mapping[str, str] | None = None
) -> tuple[WarehouseCursor, dict[str, str]]:
    """A warehouse session with the staging table of ``uri`` as the temporary view ``data``, and its
    columns (name -> DuckDB type name), as the validation sees a staged dataset.

    ``sandboxed``: the session is read-only and refuses functions that read files, settings or other
    databases (where custom predicates run, as DuckDB's locked sandbox on the Parquet path).
    ``others``: the run's other staging tables (name -> URI) a rule may read, each a view of its name.
    """
    from airflow_agent_provider.engines import warehouse_staging as ws

    table = ws.StagedTable.parse(uri)
    cursor = WarehouseCursor(ws.engine_for(table.conn_id), dialect=table.dialect)
    try:
        types = add_views(cursor, {"data": uri})["data"]
        add_views(cursor, others or {})
        if sandboxed:
            cursor.read_only().guarded = True
    except BaseException:
        cursor.close()
        raise
    return cursor, types


def add_views(cursor: WarehouseCursor, tables: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A temporary view of each staging table (name -> URI) under its name, in ``cursor``'s session; the
    views' columns (name -> DuckDB type name). Every table must be in the session's database."""
    from airflow_agent_provider.engines import warehouse_staging as ws
    from airflow_agent_provider.engines.sqlsafe import quote_ident

    views = {}
    for name, uri in tables.items():
        table = ws.StagedTable.parse(uri)
        if not ws.same_database(ws.engine_for(table.conn_id), cursor._conn.engine):
            raise ValueError(f"staging table {uri} ({name}) is in another warehouse than this stage's data")
        cursor.native(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM {table.sql}")
        views[name] = ws.table_columns(cursor._conn, table)
        if not views[name]:
            raise ws.WarehouseStagingError(f"staging table {uri} does not exist")
    return views


def same_warehouse(uri: str, other: str) -> bool:
    """Whether two staging tables are in one database (a statement can read both)."""
    from airflow_agent_provider.engines import warehouse_staging as ws

    first, second = ws.StagedTable.parse(uri), ws.StagedTable.parse(other)
    return first.conn_id == second.conn_id or ws.same_database(
        ws.engine_for(first.conn_id), ws.engine_for(second.conn_id)
    )


def stage_query(cursor: WarehouseCursor, sql: str, uri: str) -> DatasetRef:
    """Stage the rows of a DuckDB-dialect query run in ``cursor``'s session as the staging table ``uri``
    (replacing an earlier try, in one transaction), and describe it."""
    from airflow_agent_provider.engines import warehouse_staging as ws

    table = ws.StagedTable.parse(uri)
    engine = ws.engine_for(table.conn_id)
    if not ws.same_database(engine, cursor._conn.engine):
        raise ValueError(f"staging table {uri} is in another warehouse than the data it is made from")
    ws.ensure_schema(engine, table.schema)
    query = cursor.prepare(sql)
    cursor.native(f"DROP TABLE IF EXISTS {table.sql}; {ws.CREATE_STAGING} {table.sql} AS {query}")
    return ws.describe_table(engine, table)


_RUN_TASK = re.compile(r"^aap_[0-9a-f]{10}_[0-9a-f]{6}_")


def sibling_table(uri: str, dataset: str) -> str:
    """The URI of another dataset of the same run and task as the staging table ``uri`` (retention drops it
    with the run's other tables)."""
    from airflow_agent_provider.contracts.identifiers import check_name
    from airflow_agent_provider.engines import warehouse_staging as ws
    from airflow_agent_provider.engines.sqlsafe import identifier

    table = ws.StagedTable.parse(uri)
    found = _RUN_TASK.match(table.table)
    if found is None:
        raise ws.WarehouseStagingError(f"{uri} is not a run's staging table (aap_<run>_<task>_<dataset>)")
    name = identifier(found.group(0) + check_name(dataset, "dataset name").lower()[:40], "staging table")
    return ws.StagedTable(table.conn_id, table.schema, name, table.scheme).uri


def dataset_of(uri: str) -> str:
    """The dataset name a run's staging table stands for (lower case, as its table name holds it)."""
    table = uri.rsplit(".", 1)[-1]
    found = _RUN_TASK.match(table)
    return table[found.end() :] if found else table
