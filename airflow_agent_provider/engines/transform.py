"""Transform stage: named transformations over staged datasets, run in an isolated DuckDB.

Each input dataset is a table named after it; each transformation's result becomes a table under
its own ``name`` for the ones after it; the last result is streamed to Parquet. SQL steps are
lazy views, so a chain of SQL steps is computed once, when the output is written; a step read
more than once is materialized as a table (DuckDB spills it to disk under its memory limit).

Isolation: before any transformation runs, the inputs are registered as lazy ``pyarrow.dataset``
scans and DuckDB's external access is switched off and its configuration locked, so neither the
DAG author's SQL nor SQL written by Claude can read files (``read_csv``), write them (``COPY``),
attach databases or install extensions. Each SQL step must be a single SELECT query.

Python steps (``callable``) receive pandas DataFrames and so load their input into memory: use
them on data that fits, and keep heavy work in SQL.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef, StageResult, Transformation
from airflow_agent_provider.contracts.specs import check_name
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.staging import quote_ident
from airflow_agent_provider.exceptions import TransformError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

SqlWriter = Callable[[Transformation, Mapping[str, Mapping[str, str]]], str]
"""(transformation, {table: {column: DuckDB type}}) -> SQL; the Claude layer supplies it."""

OUTPUT_BATCH_ROWS = 500_000


def isolated_connection(inputs: Mapping[str, DatasetRef]) -> duckdb.DuckDBPyConnection:
    """A DuckDB with each input visible as a table, no file or network access, settings locked."""
    con = staging.connect()
    try:
        for name, ref in inputs.items():
            con.register(name, _arrow_dataset(con, ref.uri))
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _arrow_dataset(con: duckdb.DuckDBPyConnection, uri: str) -> Any:
    """A lazy scan of a staged dataset, typed as DuckDB reconciles its parts (``union_by_name``)."""
    import pyarrow.dataset as ds

    schema = con.sql(f"SELECT * FROM {staging.scan_sql(uri)} LIMIT 0").arrow().schema
    return ds.dataset(staging.part_files(uri), format="parquet", schema=schema)


def run_transformations(
    inputs: Mapping[str, DatasetRef],
    transformations: Sequence[Transformation],
    *,
    output_dataset: str,
    output_uri: str,
    write_sql: SqlWriter | None = None,
    keep_intermediate: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
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
    :raises TransformError: a step failed; the message names it and carries DuckDB's cause.
    """
    keep = dict(keep_intermediate or {})
    _check_arguments(inputs, transformations, output_dataset, keep)
    started, clock = datetime.now(timezone.utc), time.monotonic()
    con = isolated_connection(inputs)
    try:
        run = _Run(con, list(inputs), write_sql, keep, log or (lambda _line: None))
        for transformation in transformations:
            run.step(transformation)
        output, kept = run.stage(output_uri)
    finally:
        con.close()
    rows_before = sum(ref.row_count for ref in inputs.values())
    metrics = {
        "transformations_applied": [t.name for t in transformations],
        "rows_before": rows_before,
        "rows_after": output.row_count,
        "rows_filtered": max(0, rows_before - output.row_count),
        "transformation_details": run.details,
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
        write_sql: SqlWriter | None,
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
        query = _single_select(self.con, transformation.name, sql)
        for view, count in _references(query, self.views).items():
            self._use(view, count)
        self.con.execute(f"CREATE VIEW {quote_ident(transformation.name)} AS {query}\n")
        self.views[transformation.name] = query
        self.uses[transformation.name] = 1 if transformation.name in self.keep else 0
        return None

    def _written_sql(self, transformation: Transformation) -> str:
        name = transformation.name
        if self.write_sql is None:
            raise TransformError(
                name,
                "it is given as a description, and description transformations need SQL written by Claude: "
                "configure the Claude connection (anthropic_default) or give the transformation `sql`",
            )
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
        clock = time.monotonic()
        try:
            reader = self.con.sql(f"SELECT * FROM {quote_ident(name)}").to_arrow_reader(OUTPUT_BATCH_ROWS)
            writer = staging.DatasetWriter(uri)
            for batch in reader:
                writer.write(batch)
            ref = writer.finish(reader.schema)
        except Exception as err:
            raise TransformError(name, _cause(err)) from err
        self.log(f"staged {name}: {ref.row_count} rows at {uri} in {time.monotonic() - clock:.3f}s")
        return ref


def _single_select(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    """The query text of ``sql`` if it is exactly one SELECT statement."""
    import duckdb

    statements = con.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise TransformError(name, f"SQL must be a single SELECT query, got {kinds}")
    return statements[0].query.strip().rstrip(";")


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
