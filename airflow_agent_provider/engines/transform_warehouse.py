"""The transform stage inside the warehouse: each SQL step a staging table made by ``CREATE TABLE ... AS``.

Chosen by :func:`engines.transform.run_transformations` when its inputs are warehouse staging tables
(``postgres://<conn_id>/<schema>.<table>``); the metrics and the result are the DuckDB path's. A step's
SQL is written in DuckDB's dialect (or in the one ``dialect`` names) and passes the same gate
(``engines.sqlgate.check_sql``: one SELECT reading only the inputs and earlier steps by name, no file
or settings function); sqlglot then writes it in the warehouse's dialect with every table name
pointing at its staging table, refusing any other table and the functions that read files, settings
or other databases on the warehouse side (``engines.warehouse_sql``). Steps run in the staging
connection's privileges: give it a role that can read the staging schema and create tables there.

Python steps need the rows in the worker and are refused here: write them in SQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef, Transformation
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.sqlgate import check_sql
from airflow_agent_provider.engines.warehouse_sql import forbidden_functions, to_warehouse
from airflow_agent_provider.exceptions import NO_SQL_WRITER, TransformError, UnsafeSQL

if TYPE_CHECKING:
    import sqlalchemy

WriteSql = Callable[[Transformation, Mapping[str, Mapping[str, str]]], str]
DUCKDB = "duckdb"


def in_warehouse(inputs: Mapping[str, DatasetRef], output_uri: str) -> bool:
    """Whether a transform runs in the warehouse: its inputs (all of them) and output are staging tables."""
    tables = [ws.is_table_uri(ref.uri) for ref in inputs.values()]
    if not any(tables) and not ws.is_table_uri(output_uri):
        return False
    if not all(tables) or not ws.is_table_uri(output_uri):
        raise ValueError(
            "a transform's inputs and output must all be warehouse staging tables or all staged Parquet; "
            f"got inputs {sorted(ref.uri for ref in inputs.values())} and output {output_uri}"
        )
    return True


class WarehouseRun:
    """The steps of one transform run in the warehouse: a staging table per SQL step, the last renamed to the output."""

    def __init__(
        self,
        inputs: Mapping[str, DatasetRef],
        output_uri: str,
        *,
        write_sql: WriteSql | None,
        dialect: str,
        log: Callable[[str], None],
    ) -> None:
        self.output = ws.StagedTable.parse(output_uri)
        self.engine: sqlalchemy.engine.Engine = ws.engine_for(self.output.conn_id)
        self.tables: dict[str, ws.StagedTable] = {
            name.lower(): ws.StagedTable.parse(ref.uri) for name, ref in inputs.items()
        }
        for name, table in self.tables.items():
            if not ws.same_database(ws.engine_for(table.conn_id), self.engine):
                raise ValueError(f"input {name} ({table.uri}) is in another warehouse than the output {output_uri}")
        self.inputs = list(inputs)
        self.write_sql = write_sql
        self.dialect = dialect
        self.log = log
        self.steps: list[str] = []
        self.made: list[ws.StagedTable] = []
        self.details: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, int] = {}  # step -> rows its CREATE TABLE AS wrote
        with self.engine.connect() as conn:  # an input emptied since it was staged (unlogged, after a crash)
            for name, ref in inputs.items():
                ws.check_intact(conn, self.tables[name.lower()], ref)
        self._prefix = "_".join(self.output.table.split("_")[:3]) + "_s_"  # aap_<run>_<task>_s_<step>

    def step(self, transformation: Transformation) -> None:
        name, clock = transformation.name, time.monotonic()
        if transformation.type == "python":
            raise TransformError(
                name,
                "python steps read the rows into the worker; in warehouse-native staging write the step in SQL, "
                "or stage this data as Parquet (ExtractOperator without staging_conn_id) to run Python steps",
            )
        try:
            query = self._query(transformation)
            table = ws.StagedTable(
                self.output.conn_id, self.output.schema, self._prefix + name.lower()[:38], self.output.scheme
            )
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.sql}")
                self.rows[name.lower()] = ws.run_sql(conn, f"{ws.CREATE_STAGING} {table.sql} AS {query}")
        except TransformError:
            raise
        except Exception as err:
            raise TransformError(
                name, f"{type(err).__name__}: {str(getattr(err, 'orig', None) or err).strip()}"
            ) from err
        self.made.append(table)
        self.tables[name.lower()] = table
        duration = round(time.monotonic() - clock, 3)
        self.details[name] = {"status": "success", "duration_s": duration, "rows": None}
        self.steps.append(name)
        self.log(f"transformation {name} (sql, in the warehouse) ready in {duration:.3f}s as {table.uri}")

    def _query(self, transformation: Transformation) -> str:
        """The step's SQL through the gate, written for the warehouse with its tables qualified."""
        import sqlglot

        sql = transformation.sql or self._written_sql(transformation)
        read = self.dialect if transformation.sql else DUCKDB  # Claude writes DuckDB's dialect
        try:
            as_duckdb = sql if read == DUCKDB else sqlglot.transpile(sql, read=read, write=DUCKDB)[0]
            check_sql(as_duckdb, [*self.inputs, *self.steps])
            refused = forbidden_functions(sql, read=read)
            if refused:
                raise UnsafeSQL(f"function {refused[0]}() is not allowed in the warehouse")
            names = {name: (table.schema, table.table) for name, table in self.tables.items()}
            return to_warehouse(sql.strip().rstrip(";"), read=read, dialect=self.output.dialect, tables=names)
        except (UnsafeSQL, sqlglot.errors.ParseError) as err:
            raise TransformError(transformation.name, str(err).splitlines()[0]) from err

    def _written_sql(self, transformation: Transformation) -> str:
        name = transformation.name
        if self.write_sql is None:
            raise TransformError(name, NO_SQL_WRITER)
        tables = transformation.inputs or [*self.inputs, *self.steps]
        with self.engine.connect() as conn:
            schemas = {table: ws.table_columns(conn, self.tables[table.lower()]) for table in tables}
        sql = self.write_sql(transformation, schemas)
        if not isinstance(sql, str) or not sql.strip():
            raise TransformError(name, "writing SQL from its description returned no SQL")
        return sql

    def stage(self) -> DatasetRef:
        """The last step's table becomes the output table (renamed, not copied); returns its description."""
        last = self.tables[self.steps[-1].lower()]
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.output.sql}")
            conn.exec_driver_sql(f"ALTER TABLE {last.sql} RENAME TO {ws.quote(self.output.table)}")
        self.made.remove(last)
        ref = ws.describe_table(self.engine, self.output, rows=self.rows[self.steps[-1].lower()])
        self.details[self.steps[-1]]["rows"] = ref.row_count
        self.log(f"staged {self.steps[-1]}: {ref.row_count} rows at {ref.uri}")
        return ref

    def close(self) -> None:
        """Drop the intermediate steps' tables (the output stays)."""
        with self.engine.begin() as conn:
            for table in self.made:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.sql}")
        self.made.clear()
