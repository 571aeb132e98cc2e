"""The extract stage: stream every source into a staged dataset, concurrently, and describe what came in.

Plain values in and out, no Airflow: the operator resolves its connections into an engine factory
and an endpoint factory, builds the staging URIs, and pushes the returned ``StageResult`` to XCom.
The readers live in :mod:`airflow_agent_provider.engines.sources`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef, FileSource, HttpSource, SqlSource, StageResult
from airflow_agent_provider.engines.sources import Cancelled, Sink, first_line
from airflow_agent_provider.engines.sources.file import check_encoding, extract_file
from airflow_agent_provider.engines.sources.http import HttpEndpoint, extract_http
from airflow_agent_provider.engines.sources.sql import extract_sql
from airflow_agent_provider.exceptions import RowCountTooLow, SourceError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from airflow_agent_provider.engines.warehouse_staging import WarehouseStaging

__all__ = ["HttpEndpoint", "extract_sources"]

AnySource = SqlSource | HttpSource | FileSource
_KIND = {"sql": "sql", "database": "sql", "http": "http", "api": "http", "file": "file"}


@dataclass
class _Context:
    dataset_uri: Callable[[str], str]
    sql_engine: Callable[[str], Engine] | None
    http_endpoint: Callable[[str], HttpEndpoint] | None
    minimum: int | None
    log: Callable[[str], None] | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    warehouse: WarehouseStaging | None = None


@dataclass
class _Outcome:
    source: AnySource
    ref: DatasetRef
    duration_s: float
    pages: int | None
    warnings: list[str]


def extract_sources(
    sources: Sequence[AnySource],
    *,
    dataset_uri: Callable[[str], str],
    sql_engine: Callable[[str], Engine] | None = None,
    http_endpoint: Callable[[str], HttpEndpoint] | None = None,
    expected_row_count_min: int | None = 1,
    max_workers: int = 4,
    log: Callable[[str], None] | None = None,
    warehouse: WarehouseStaging | None = None,
) -> StageResult:
    """Stage every source as Parquet (or as warehouse tables), concurrently, and return what was staged.

    :param sources: parsed source specs (``contracts.parse_sources``); names become dataset names.
    :param dataset_uri: dataset name -> the staging folder URI to write it to.
    :param sql_engine: conn id -> SQLAlchemy engine, for sql sources.
    :param http_endpoint: conn id -> :class:`HttpEndpoint`, for http sources.
    :param expected_row_count_min: fewest rows each source must return (a source's own setting wins);
        ``0`` or ``None`` allows empty sources.
    :param max_workers: how many sources run at the same time.
    :param log: receives progress lines such as ``events: 300000 rows (152000 rows/s)``.
    :param warehouse: warehouse-native mode: each source becomes a run-scoped table there (a SQL source
        on the same database as ``CREATE TABLE ... AS`` its query, so no row leaves it; other sources
        bulk-copied in); ``dataset_uri`` is then unused.
    :raises SourceError: a source failed (the first failing one in source order); the others were stopped.
    :raises RowCountTooLow: a source returned fewer rows than its minimum.
    """
    _check_arguments(sources, sql_engine, http_endpoint, expected_row_count_min, max_workers)
    context = _Context(dataset_uri, sql_engine, http_endpoint, expected_row_count_min, log, warehouse=warehouse)
    started = time.monotonic()
    outcomes = _run_all(list(sources), context, max_workers)
    return _result(outcomes, time.monotonic() - started)


def _check_arguments(
    sources: Sequence[AnySource],
    sql_engine: Callable[[str], Engine] | None,
    http_endpoint: Callable[[str], HttpEndpoint] | None,
    minimum: int | None,
    max_workers: int,
) -> None:
    if not sources:
        raise ValueError("extract needs at least one source")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    if minimum is not None and minimum < 0:
        raise ValueError(f"expected_row_count_min must be 0 or more, got {minimum}")
    for source in sources:
        _check_source(source, sql_engine, http_endpoint)


def _check_source(source: Any, sql_engine: Any, http_endpoint: Any) -> None:
    if not isinstance(source, SqlSource | HttpSource | FileSource):
        raise TypeError(f"sources must be parsed specs (contracts.parse_sources), got {type(source).__name__}")
    if isinstance(source, SqlSource) and sql_engine is None:
        raise ValueError(f"source {source.name!r} is a sql source, but no sql_engine factory was given")
    if isinstance(source, HttpSource) and http_endpoint is None:
        raise ValueError(f"source {source.name!r} is an http source, but no http_endpoint factory was given")
    pagination = source.pagination if isinstance(source, HttpSource) else None
    if pagination and pagination.style == "cursor" and not pagination.cursor_path:
        raise ValueError(f"source {source.name!r}: cursor pagination needs cursor_path (where the next cursor is)")
    if isinstance(source, FileSource):
        check_encoding(source)


def _run_all(sources: list[AnySource], context: _Context, max_workers: int) -> list[_Outcome]:
    """Run the sources in a thread pool; on the first failure stop the others and raise it."""
    with ThreadPoolExecutor(max_workers=min(max_workers, len(sources)), thread_name_prefix="extract") as pool:
        futures = [pool.submit(_run_one, source, context) for source in sources]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # the task is being killed: stop the readers before leaving
            _stop(context, futures)
            raise
        if any(_failure(f) for f in futures):
            _stop(context, futures)
        wait(futures)
    failures = [error for error in map(_failure, futures) if error is not None]
    if failures:
        raise failures[0]
    return [future.result() for future in futures]


def _stop(context: _Context, futures: list[Future[_Outcome]]) -> None:
    """Tell running sources to stop at their next chunk; drop those not started yet."""
    context.cancelled.set()
    for future in futures:
        future.cancel()


def _failure(future: Future[_Outcome]) -> BaseException | None:
    """The error of a finished source; None while it runs, once it succeeded, or when it was stopped."""
    if not future.done() or future.cancelled():
        return None
    error = future.exception()
    return None if isinstance(error, Cancelled) else error


def _run_one(source: AnySource, context: _Context) -> _Outcome:
    if context.warehouse is not None:
        return _run_one_in_warehouse(source, context, context.warehouse)
    started = time.monotonic()
    try:
        with Sink(
            source.name,
            context.dataset_uri(source.name),
            chunk_size=source.chunk_size,
            cancelled=context.cancelled,
            log=context.log,
        ) as sink:
            _read(source, sink, context)
            _check_minimum(source, sink.rows, context.minimum)
            ref = sink.finish()
    except (SourceError, Cancelled):
        raise
    except Exception as err:
        raise SourceError(source.name, f"{type(err).__name__}: {first_line(str(err))}") from err
    duration = time.monotonic() - started
    sink.say(f"{ref.row_count} rows in {duration:.1f} s ({ref.row_count / max(duration, 1e-9):.0f} rows/s)")
    warnings = list(sink.warnings)
    if ref.row_count == 0:
        warnings.append(f"{source.name}: returned 0 rows (allowed: expected_row_count_min is 0)")
    return _Outcome(source, ref, duration, sink.pages, warnings)


def _run_one_in_warehouse(source: AnySource, context: _Context, warehouse: WarehouseStaging) -> _Outcome:
    """Stage a source as a table in the staging warehouse: in place for a SQL source on that database,
    else read as usual into a scratch Parquet folder and bulk-copied in (COPY), the folder removed after."""
    import shutil
    import tempfile

    from airflow_agent_provider.engines import warehouse_staging as ws
    from airflow_agent_provider.engines.load import load_dataset

    started, table = time.monotonic(), warehouse.table(source.name)
    log = context.log or (lambda _line: None)
    try:
        engine = ws.engine_for(warehouse.conn_id)
        if isinstance(source, SqlSource) and _in_warehouse(source, context, warehouse, engine):
            written = ws.create_table_as(engine, table, source.query, source.parameters)
            ref = ws.describe_table(engine, table, rows=written)
            _check_minimum(source, ref.row_count, context.minimum)
            log(f"{source.name}: staged inside the warehouse as {table.uri} (no row left it)")
        else:
            scratch = tempfile.mkdtemp(prefix="aap-wh-")
            try:
                with Sink(source.name, f"{scratch}/{source.name}", chunk_size=source.chunk_size,
                          cancelled=context.cancelled, log=context.log) as sink:  # fmt: skip
                    _read(source, sink, context)
                    _check_minimum(source, sink.rows, context.minimum)
                    staged = sink.finish()
                ws.ensure_schema(engine, table.schema)
                ws.drop_table(engine, table)
                load_dataset(staged, engine=engine, target_table=f"{table.schema}.{table.table}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            ref = ws.describe_table(engine, table)
            log(f"{source.name}: copied into the warehouse as {table.uri}")
    except (SourceError, Cancelled):
        raise
    except Exception as err:
        raise SourceError(source.name, f"{type(err).__name__}: {first_line(str(err))}") from err
    warnings = [f"{source.name}: returned 0 rows (allowed: expected_row_count_min is 0)"] if not ref.row_count else []
    return _Outcome(source, ref, time.monotonic() - started, None, warnings)


def _in_warehouse(source: SqlSource, context: _Context, warehouse: WarehouseStaging, engine: Engine) -> bool:
    """Whether a SQL source reads the staging warehouse's own database as the staging login (so its query
    can run there with the privileges it would have been read with); else it is read and copied in."""
    from airflow_agent_provider.engines.warehouse_staging import same_database

    if source.conn_id == warehouse.conn_id:
        return True
    other = _resolve(source, context.sql_engine)
    return same_database(engine, other) and engine.url.username == other.url.username


def _read(source: AnySource, sink: Sink, context: _Context) -> None:
    if isinstance(source, SqlSource):
        extract_sql(source, _resolve(source, context.sql_engine), sink)
    elif isinstance(source, HttpSource):
        extract_http(source, _resolve(source, context.http_endpoint), sink)
    else:
        extract_file(source, sink)


def _resolve(source: SqlSource | HttpSource, factory: Callable[[str], Any] | None) -> Any:
    assert factory is not None  # checked up front
    try:
        return factory(source.conn_id)
    except Exception as err:
        raise SourceError(source.name, f"cannot use connection {source.conn_id!r}: {first_line(str(err))}") from err


def _check_minimum(source: AnySource, rows: int, default: int | None) -> None:
    minimum = source.expected_row_count_min if source.expected_row_count_min is not None else (default or 0)
    if rows >= minimum:
        return
    hint = " — set expected_row_count_min=0 to allow empty sources" if rows == 0 else ""
    raise RowCountTooLow(source.name, f"returned {rows} rows; expected at least {minimum}{hint}")


def _result(outcomes: list[_Outcome], duration: float) -> StageResult:
    names = [o.source.name for o in outcomes]
    warnings = [w for o in outcomes for w in o.warnings]
    metrics: dict[str, Any] = {
        "sources_extracted": names,
        "total_rows": sum(o.ref.row_count for o in outcomes),
        "columns": {o.source.name: o.ref.columns for o in outcomes},
        "data_location": {o.source.name: o.ref.uri for o in outcomes},
        "extraction_duration_seconds": round(duration, 3),
        "source_checksums": {o.source.name: o.ref.checksum for o in outcomes},
        "per_source": {o.source.name: _per_source(o) for o in outcomes},
    }
    if warnings:
        metrics["warnings"] = warnings
    return StageResult(
        stage="extract",
        status="success",
        datasets={o.source.name: o.ref for o in outcomes},
        metrics=metrics,
        duration_s=round(duration, 3),
        warnings=warnings,
    )


def _per_source(outcome: _Outcome) -> dict[str, Any]:
    info: dict[str, Any] = {
        "rows": outcome.ref.row_count,
        "duration_s": round(outcome.duration_s, 3),
        "type": _KIND[outcome.source.type],
    }
    if outcome.pages is not None:
        info["pages"] = outcome.pages
    return info
