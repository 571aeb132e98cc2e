"""Transform stage: named transformations over staged datasets, run in an isolated DuckDB.

Each input dataset is a table named after it; each transformation's result becomes a table under
its own ``name`` for the ones after it; the last result is written by DuckDB itself
(``COPY ... TO`` a staged folder, streamed under its memory limit). SQL steps are lazy views, so
a chain of SQL steps is computed once, when the output is written; a step read more than once
is materialized as a table (DuckDB spills it to disk under its memory limit).

Isolation, two locks. (1) Before any transformation runs, the inputs become views over their
staged part files (native ``read_parquet``), DuckDB may reach files only under those folders, the
output folders and its own spill folder (``allowed_directories``), external access is otherwise off
and the configuration locked: no other file, no network, no ``ATTACH`` elsewhere, no ``INSTALL``,
no ``SET``. (2) Each SQL step, written by a person or by Claude, passes the one SQL gate
(``engines.sqlgate.check_sql``): a single SELECT whose only tables are the inputs, earlier steps and
its own CTEs, with no table function but ``range``/``generate_series``/``unnest`` and no file path as
a table, so a step cannot read the allowed folders' files by path nor write to them (``COPY`` is not
a SELECT). Only this module's own ``COPY`` writes.

Python steps (``callable``) receive pandas DataFrames and so load their input into memory: use
them on data that fits, and keep heavy work in SQL.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef, StageResult, Transformation
from airflow_agent_provider.contracts.identifiers import check_name
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.settings import current
from airflow_agent_provider.engines.sqlgate import check_sql
from airflow_agent_provider.engines.sqlsafe import quote_ident, sql_literal
from airflow_agent_provider.engines.staging.paths import is_local, local_path
from airflow_agent_provider.engines.staging.writer import COMPRESSION
from airflow_agent_provider.exceptions import NO_SQL_WRITER, TransformError, UnsafeSQL

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

WriteSql = Callable[[Transformation, Mapping[str, Mapping[str, str]]], str]
"""(transformation, {table: {column: DuckDB type}}) -> SQL; the Claude layer's ``agents.SqlWriter`` is one."""


def isolated_connection(inputs: Mapping[str, DatasetRef], *, writable: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """A DuckDB with each input a view over its part files; files reachable only in those folders.

    :param inputs: dataset name -> staged dataset; each becomes a view named after the dataset.
    :param writable: local folders this module writes with ``COPY`` (the output, kept steps).
    """
    con = staging.connect(memory_limit=current().transform_memory)
    try:
        folders = {os.path.abspath(folder) for folder in writable}  # DuckDB adds its spill folder itself
        for name, ref in inputs.items():
            files = [f if "://" in f else os.path.abspath(f) for f in staging.part_files(ref.uri)]
            folders.update(f.rsplit("/", 1)[0] for f in files)  # remote ones: read through the area's filesystem
            scan = f"read_parquet([{', '.join(sql_literal(f) for f in files)}], union_by_name = true)"
            con.execute(f"CREATE VIEW {quote_ident(name)} AS SELECT * FROM {scan}")
        allowed = ", ".join(sql_literal(folder.rstrip("/") + "/") for folder in sorted(folders))
        con.execute(f"SET allowed_directories = [{allowed}]")
        con.execute("SET python_enable_replacements = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _local_folder(uri: str) -> str | None:
    """The local path of a staging folder URI, ``None`` for a remote (fsspec) one."""
    return os.path.abspath(local_path(uri)) if is_local(uri) else None


def run_transformations(
    inputs: Mapping[str, DatasetRef],
    transformations: Sequence[Transformation],
    *,
    output_dataset: str,
    output_uri: str,
    write_sql: WriteSql | None = None,
    keep_intermediate: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    dialect: str = "duckdb",
) -> StageResult:
    """Run ``transformations`` in order over ``inputs`` and stage the last result at ``output_uri``.

    Metrics: ``transformations_applied``, ``rows_before`` (sum of input rows), ``rows_after``,
    ``rows_filtered`` (``max(0, rows_before - rows_after)``: net rows removed, so a join that
    multiplies rows reports 0), ``transformation_details`` (per step: status, duration_s and rows,
    ``None`` for a lazy SQL step that was never counted on its own) and ``output_location``.

    :param inputs: dataset name -> staged dataset; each is a table named after the dataset.
    :param transformations: the steps, from ``contracts.parse_transformations``.
    :param output_dataset: the name of the staged result.
    :param output_uri: the staging folder the result is written to.
    :param write_sql: writes SQL for transformations given only a ``description``.
    :param keep_intermediate: transformation name -> staging folder, to also stage that step.
    :param log: receives one line per step.
    :param dialect: the dialect the SQL steps are written in (sqlglot's name; default DuckDB's). With
        Parquet inputs other dialects are transpiled to DuckDB's; with warehouse staging tables as
        inputs (and output) the steps run in the warehouse (``engines.transform_warehouse``), written
        in its dialect by sqlglot.
    :raises TransformError: a step failed; the message names it and carries DuckDB's cause.
    """
    from airflow_agent_provider.engines import transform_warehouse

    keep = dict(keep_intermediate or {})
    _check_arguments(inputs, transformations, output_dataset, keep)
    started, clock = datetime.now(timezone.utc), time.monotonic()
    if transform_warehouse.in_warehouse(inputs, output_uri):
        if keep:
            raise ValueError("keep_intermediate is not supported with warehouse staging tables")
        in_wh = transform_warehouse.WarehouseRun(
            inputs, output_uri, write_sql=write_sql, dialect=dialect, log=log or (lambda _line: None)
        )
        try:
            for transformation in transformations:
                in_wh.step(transformation)
            output, details = in_wh.stage(), in_wh.details
            kept: dict[str, DatasetRef] = {}
        finally:
            in_wh.close()
    else:
        if dialect != "duckdb":
            transformations = [_to_duckdb(t, dialect) for t in transformations]
        writable = [_local_folder(uri) for uri in [output_uri, *keep.values()]]
        con = isolated_connection(inputs, writable=[folder for folder in writable if folder])
        try:
            run = _Run(con, list(inputs), write_sql, keep, log or (lambda _line: None))
            for transformation in transformations:
                run.step(transformation)
            output, kept = run.stage(output_uri)
            details = run.details
        finally:
            con.close()
    rows_before = sum(ref.row_count for ref in inputs.values())
    metrics = {
        "transformations_applied": [t.name for t in transformations],
        "rows_before": rows_before,
        "rows_after": output.row_count,
        "rows_filtered": max(0, rows_before - output.row_count),
        "transformation_details": details,
        "output_location": output_uri,
    }
    return StageResult(
        stage="transform",
        status="success",
        datasets={output_dataset: output, **kept},
        metrics=metrics,
        duration_s=round(time.monotonic() - clock, 3),
        started_at=started,
    )


def _to_duckdb(transformation: Transformation, dialect: str) -> Transformation:
    """A SQL step written in another dialect, transpiled to DuckDB's with sqlglot (the gate then checks it)."""
    if transformation.type != "sql" or not transformation.sql:
        return transformation
    import sqlglot

    try:
        sql = sqlglot.transpile(transformation.sql, read=dialect, write="duckdb")
    except (sqlglot.errors.ParseError, ValueError) as err:
        raise TransformError(transformation.name, f"the SQL does not parse as {dialect}: {err}") from err
    if len(sql) != 1:
        raise TransformError(transformation.name, f"the SQL must be a single SELECT query, found {len(sql)} statements")
    return transformation.model_copy(update={"sql": sql[0]})


def _check_arguments(
    inputs: Mapping[str, DatasetRef],
    transformations: Sequence[Transformation],
    output_dataset: str,
    keep: Mapping[str, str],
) -> None:
    if not inputs:
        raise ValueError("transform needs at least one input dataset")
    if not transformations:
        raise ValueError("transform needs at least one transformation")
    check_name(output_dataset, "output dataset name")
    visible = {check_name(name, "input dataset name").lower() for name in inputs}
    for transformation in transformations:
        _check_inputs_visible(transformation, visible)
        if transformation.name.lower() in visible:
            raise ValueError(
                f"transformation name {transformation.name!r} is already used by an input or an earlier transformation"
            )
        visible.add(transformation.name.lower())
    unknown = sorted(set(keep) - {t.name for t in transformations})
    if unknown:
        raise ValueError(f"keep_intermediate names unknown transformations: {', '.join(unknown)}")
    if output_dataset in keep:
        raise ValueError(f"keep_intermediate cannot stage {output_dataset!r}: it is the output dataset's name")


def _check_inputs_visible(transformation: Transformation, visible: set[str]) -> None:
    missing = [name for name in transformation.inputs or [] if name.lower() not in visible]
    if missing:
        raise ValueError(
            f"transformation {transformation.name!r} reads {', '.join(missing)}, "
            "which is neither an input dataset nor an earlier transformation"
        )


class _Run:
    """The tables of one transform run: inputs, lazy SQL views, materialized tables, Python frames."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        input_names: list[str],
        write_sql: WriteSql | None,
        keep: dict[str, str],
        log: Callable[[str], None],
    ) -> None:
        self.con = con
        self.inputs = input_names
        self.write_sql = write_sql
        self.keep = keep
        self.log = log
        self.steps: list[str] = []
        self.views: dict[str, str] = {}
        self.uses: dict[str, int] = {}
        self.details: dict[str, dict[str, Any]] = {}

    def step(self, transformation: Transformation) -> None:
        name, clock = transformation.name, time.monotonic()
        try:
            rows = self._python(transformation) if transformation.type == "python" else self._sql(transformation)
        except (TransformError, TypeError):
            raise
        except Exception as err:
            raise TransformError(name, _cause(err)) from err
        duration = round(time.monotonic() - clock, 3)
        self.details[name] = {"status": "success", "duration_s": duration, "rows": rows}
        self.steps.append(name)
        self.log(f"transformation {name} ({transformation.type}) ready in {duration:.3f}s, rows: {rows}")

    def _sql(self, transformation: Transformation) -> int | None:
        sql = transformation.sql or self._written_sql(transformation)
        try:
            query = check_sql(sql, [*self.inputs, *self.steps], self.con)
        except UnsafeSQL as err:
            raise TransformError(transformation.name, str(err)) from err
        for view, count in _references(query, self.views).items():
            self._use(view, count)
        self.con.execute(f"CREATE VIEW {quote_ident(transformation.name)} AS {query}\n")
        self.views[transformation.name] = query
        self.uses[transformation.name] = 1 if transformation.name in self.keep else 0
        return None

    def _written_sql(self, transformation: Transformation) -> str:
        name = transformation.name
        if self.write_sql is None:
            raise TransformError(name, NO_SQL_WRITER)
        tables = transformation.inputs or [*self.inputs, *self.steps]
        schemas = {table: staging.columns_of(self.con, quote_ident(table)) for table in tables}
        try:
            sql = self.write_sql(transformation, schemas)
        except Exception as err:
            raise TransformError(name, f"writing SQL from its description failed: {_cause(err)}") from err
        if not isinstance(sql, str) or not sql.strip():
            raise TransformError(name, "writing SQL from its description returned no SQL")
        return sql

    def _python(self, transformation: Transformation) -> int:
        import pandas as pd

        function = _resolve(str(transformation.callable))
        frames = self._frames(transformation)
        try:
            result = function(frames)
        except Exception as err:
            raise TransformError(transformation.name, f"{transformation.callable} raised {_cause(err)}") from err
        if not isinstance(result, pd.DataFrame):
            raise TypeError(
                f"python transformation {transformation.name!r}: {transformation.callable} returned "
                f"{type(result).__name__}, expected a pandas DataFrame"
            )
        self.con.register(transformation.name, result)
        return len(result)

    def _frames(self, transformation: Transformation) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The previous step's rows, else the only input's, else (several inputs) name -> rows."""
        names = transformation.inputs or (self.steps[-1:] or self.inputs)
        for name in names:
            self._use(name)
        frames = {name: self.con.sql(f"SELECT * FROM {quote_ident(name)}").df() for name in names}
        return frames[names[0]] if len(names) == 1 else frames

    def _use(self, name: str, count: int = 1) -> None:
        """Count a read of a step; a lazy view read twice is materialized so it is computed once."""
        if name not in self.views:
            return
        self.uses[name] += count
        if self.uses[name] >= 2:
            self._materialize(name)

    def _materialize(self, name: str) -> None:
        clock, table = time.monotonic(), quote_ident(name)
        try:
            self.con.execute(f"DROP VIEW {table}")
            self.con.execute(f"CREATE TABLE {table} AS {self.views.pop(name)}\n").fetchall()
            rows = self.con.execute(f"SELECT count(*) FROM {table}").fetchall()
        except Exception as err:
            raise TransformError(name, _cause(err)) from err
        detail = self.details[name]
        detail["rows"] = int(rows[0][0])
        detail["duration_s"] = round(detail["duration_s"] + time.monotonic() - clock, 3)

    def stage(self, output_uri: str) -> tuple[DatasetRef, dict[str, DatasetRef]]:
        """Write the kept intermediate steps and the last step's result; return their refs."""
        last = self.steps[-1]
        self._use(last)
        kept = {name: self._write(name, uri) for name, uri in self.keep.items()}
        output = self._write(last, output_uri)
        self.details[last]["rows"] = output.row_count
        return output, kept

    def _write(self, name: str, uri: str) -> DatasetRef:
        clock, folder = time.monotonic(), _local_folder(uri)
        try:
            if folder:
                ref = self._copy(name, folder, uri)
            else:  # a remote folder: Arrow batches through fsspec
                ref = staging.write_query(self.con, self._output_query(name), uri)
        except Exception as err:
            raise TransformError(name, _cause(err)) from err
        self.log(f"staged {name}: {ref.row_count} rows at {uri} in {time.monotonic() - clock:.3f}s")
        return ref

    def _copy(self, name: str, folder: str, uri: str) -> DatasetRef:
        """DuckDB writes the step to ``folder/part-00000.parquet``, rows never passing through Python."""
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        target = sql_literal(f"{folder}/part-00000.parquet")
        options = f"FORMAT parquet, COMPRESSION {COMPRESSION}"
        self.con.execute(f"COPY ({self._output_query(name)}) TO {target} ({options})").fetchall()
        return staging.describe(uri)

    def _output_query(self, name: str) -> str:
        """``SELECT *`` of a step, HUGEINT (``sum`` of integers) as DECIMAL(38,0) as Arrow staged it, not DOUBLE."""
        table = quote_ident(name)
        wide = [column for column, kind in staging.columns_of(self.con, table).items() if kind == "HUGEINT"]
        replace = ", ".join(f"CAST({quote_ident(c)} AS DECIMAL(38, 0)) AS {quote_ident(c)}" for c in wide)
        return f"SELECT * REPLACE ({replace}) FROM {table}" if wide else f"SELECT * FROM {table}"


def _references(query: str, views: Mapping[str, str]) -> dict[str, int]:
    """How often ``query`` names each lazy view (an over-count only materializes a view early)."""
    counts = {}
    for view in views:
        found = len(re.findall(rf'(?<![\w$])"?{re.escape(view)}"?(?![\w$])', query, flags=re.IGNORECASE))
        if found:
            counts[view] = found
    return counts


def _resolve(path: str) -> Callable[[Any], Any]:
    """The function at ``package.module:function`` or ``package.module.function``."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"callable {path!r} must be a dotted path like 'package.module:function'")
    function = reduce(getattr, attribute.split("."), importlib.import_module(module_name))
    if not callable(function):
        raise TypeError(f"{path!r} is a {type(function).__name__}, not a function")
    return function


def _cause(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"
