"""Staged datasets: Parquet part files under a run-scoped folder of the staging root.

A dataset is a folder of ``part-NNNNN.parquet`` files written chunk by chunk, so no stage ever
holds a whole table in memory. Readers go through DuckDB (``read_parquet(..., union_by_name)``),
which also reconciles chunks whose inferred types differ. Local folders are read in place;
other fsspec URIs (``s3://`` ...) are written through fsspec and cached locally for reading.

Staged data is short-lived scratch, so parts are written for speed: snappy (which every Parquet
reader handles) and dictionary pages for text columns only. The writer folds each chunk into the
dataset's checksum as it goes, so finishing a dataset reads only the part files' footers.
Scans that create no tables run on cursors of one process-wide DuckDB (:func:`shared_cursor`),
which saves the tens of milliseconds a new DuckDB costs per source.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.contracts.specs import check_name
from airflow_agent_provider.exceptions import AgentProviderError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

_SEGMENT_RE = re.compile(r"[^A-Za-z0-9._-]+")
DEFAULT_STAGING_ENV = "AGENT_PROVIDER_STAGING_ROOT"
COMPRESSION = "snappy"
_CHECKSUM_MOD = 1 << 64
_CHUNK_VIEW = "aap_staged_chunk"


class StagingError(AgentProviderError):
    """A staged dataset is missing, unreadable, or would escape the staging root."""


def safe_segment(value: str) -> str:
    """A path segment from a dag, run or task id: readable, collision-free, never ``..`` or ``/``."""
    cleaned = _SEGMENT_RE.sub("_", str(value)).strip("._") or "_"
    if cleaned == value:
        return value
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:8]
    return f"{cleaned[:80]}-{digest}"


def default_root() -> str:
    """The staging root: ``$AGENT_PROVIDER_STAGING_ROOT``, else ``$AIRFLOW_HOME/staging``."""
    root = os.environ.get(DEFAULT_STAGING_ENV)
    if root:
        return root
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "staging")


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def stage_uri(root: str, dag_id: str, run_id: str, task_id: str, dataset: str, *, map_index: int | None = None) -> str:
    """The folder URI of one dataset of one task of one run: ``root/dag/run/task[/map_i]/dataset``."""
    check_name(dataset, "dataset name")
    parts = [safe_segment(dag_id), safe_segment(run_id), safe_segment(task_id)]
    if map_index is not None and map_index >= 0:
        parts.append(f"map_{int(map_index)}")
    parts.append(dataset)
    return root.rstrip("/") + "/" + "/".join(parts)


def _filesystem(uri: str) -> tuple[Any, str]:
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def _clear(uri: str) -> None:
    """Remove what an earlier try left, so a retry restages from scratch (idempotent)."""
    if _is_local(uri):
        import shutil

        shutil.rmtree(_local(uri), ignore_errors=True)
        Path(_local(uri)).mkdir(parents=True, exist_ok=True)
        return
    fs, path = _filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


class DatasetWriter:
    """Write one dataset chunk by chunk; ``finish()`` describes what was written.

    :param uri: the dataset's folder URI (cleared first, so a retry restages from scratch).
    :param progress: called with (rows so far, seconds since start) after each part.
    :param compression: the Parquet codec of the parts.
    """

    def __init__(self, uri: str, *, progress: Any = None, compression: str = COMPRESSION) -> None:
        self.uri = uri.rstrip("/")
        self.rows = 0
        self._parts = 0
        self._schema: pa.Schema | None = None
        self._progress = progress
        self._compression = compression
        self._checksum = _RunningChecksum()
        self._started = time.monotonic()
        _clear(self.uri)

    @property
    def checksum_on_write(self) -> bool:
        """True while every chunk hashed alike, so ``finish()`` can skip re-reading the dataset
        (it still checks the reconciled column types against the chunks' and reads it if they differ)."""
        return bool(self._checksum.exact and self._checksum.columns) and _is_local(self.uri)

    def write(self, chunk: pa.Table | pa.RecordBatch | pd.DataFrame) -> None:
        table = _as_table(chunk)
        if table.num_rows == 0 and self._parts > 0:
            return
        _write_part(table, f"{self.uri}/part-{self._parts:05d}.parquet", self._compression)
        self._checksum.add(table)
        self._parts += 1
        self.rows += table.num_rows
        if self._schema is None:
            self._schema = table.schema  # later parts may differ; DuckDB reconciles them on read
        if self._progress is not None:
            self._progress(self.rows, time.monotonic() - self._started)

    def finish(self, schema: pa.Schema | None = None) -> DatasetRef:
        """Close the dataset; an empty one still gets a part file carrying its schema."""
        import pyarrow as pa

        if self._parts == 0:
            self.write(pa.table({f.name: pa.array([], f.type) for f in (schema or pa.schema([]))}))
        if not self.checksum_on_write:
            return describe(self.uri)
        con = shared_cursor()
        try:
            types = columns_of(con, scan_sql(self.uri))  # reads the parts' footers only
            if list(types.items()) != self._checksum.columns:  # the reconciled read differs from a chunk
                return describe(self.uri, con)
            return _ref(self.uri, self.rows, types, self._checksum.total)
        finally:
            con.close()


class _RunningChecksum:
    """:func:`describe`'s checksum, folded chunk by chunk while the chunks are still in memory.

    DuckDB hashes each chunk with the column names and types it sees in that chunk; ``exact``
    turns False when a chunk's columns differ from the first one's or it cannot be hashed, since
    then only a read of the reconciled dataset gives describe()'s value.
    """

    def __init__(self) -> None:
        self.total = 0
        self.columns: list[tuple[str, str]] | None = None
        self.exact = True

    def add(self, table: pa.Table) -> None:
        if not self.exact:
            return
        hashed = _hash_chunk(table)
        if hashed is None or (self.columns is not None and hashed[0] != self.columns):
            self.exact = False
            return
        self.columns = hashed[0]
        self.total = (self.total + hashed[1]) % _CHECKSUM_MOD


def _hash_chunk(table: pa.Table) -> tuple[list[tuple[str, str]], int] | None:
    """The chunk's (column, DuckDB type) pairs and its sum of row hashes mod 2**64; None if DuckDB cannot."""
    import duckdb

    if table.num_columns == 0:
        return None
    con = shared_cursor()
    try:
        con.register(_CHUNK_VIEW, table)
        types = columns_of(con, _CHUNK_VIEW)
        row = con.execute(checksum_sql(list(types), _CHUNK_VIEW)).fetchall()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()
    return list(types.items()), int(row[1])


def _write_part(table: pa.Table, target: str, compression: str) -> None:
    """One part file: dictionary pages for text columns only (numbers and times gain little from them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    options: dict[str, Any] = {"compression": compression, "use_dictionary": text}
    if _is_local(target):
        pq.write_table(table, _local(target), **options)
        return
    fs, path = _filesystem(target)
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle, **options)


def _as_table(chunk: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(chunk, pa.Table):
        return chunk
    if isinstance(chunk, pa.RecordBatch):
        return pa.Table.from_batches([chunk])
    return pa.Table.from_pandas(chunk, preserve_index=False)


def part_files(uri: str) -> list[str]:
    """The local paths of a dataset's part files (remote datasets are cached locally first)."""
    uri = uri.rstrip("/")
    if not _is_local(uri):
        return _cached_parts(uri)
    folder = Path(_local(uri))
    if folder.is_file():
        return [str(folder)]
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise StagingError(f"staged dataset {uri} is missing or empty (no parquet files)")
    return files


def _cached_parts(uri: str) -> list[str]:
    fs, path = _filesystem(uri)
    cache = Path(tempfile.gettempdir()) / "agent_provider_cache" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    names = sorted(p for p in fs.ls(path, detail=False) if str(p).endswith(".parquet"))
    if not names:
        raise StagingError(f"staged dataset {uri} is missing or empty (no parquet files)")
    local = []
    for name in names:
        target = cache / Path(name).name
        fs.get(name, str(target))
        local.append(str(target))
    return local


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'


def scan_sql(uri: str) -> str:
    """A DuckDB table expression reading a staged dataset."""
    files = ", ".join(sql_literal(f) for f in part_files(uri))
    return f"read_parquet([{files}], union_by_name = true)"


def connect(*, memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with bounded memory that spills to a temp folder."""
    import duckdb

    con = duckdb.connect(":memory:")
    limit = memory_limit or os.environ.get("AGENT_PROVIDER_DUCKDB_MEMORY", "1GB")
    con.execute(f"SET memory_limit = {sql_literal(limit)}")
    con.execute(f"SET temp_directory = {sql_literal(tempfile.gettempdir() + '/agent_provider_duckdb')}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


class ProcessDuckDB:
    """One DuckDB per process, made by ``make`` on first use; a forked child makes its own.

    The parent's DuckDB has no threads in a forked child, so the child sets it aside (never closes
    it) and makes a new one.
    """

    def __init__(self, make: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._inherited: list[duckdb.DuckDBPyConnection] = []
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        if self._con is not None:
            self._inherited.append(self._con)
        self._con = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the process's DuckDB; close it after use."""
        with self._lock:
            if self._con is None:
                self._con = self._make()
            return self._con.cursor()


def _shared_database() -> duckdb.DuckDBPyConnection:
    con = connect()
    # It lives as long as the process: hand freed memory back soon (measured at 10M rows,
    # the defaults of 128/512 MiB let the extract's peak grow by about 50 MiB).
    con.execute("SET allocator_flush_threshold = '32MB'")
    con.execute("SET allocator_bulk_deallocation_flush_threshold = '32MB'")
    return con


_SHARED = ProcessDuckDB(_shared_database)


def shared_cursor() -> duckdb.DuckDBPyConnection:
    """A new cursor on one process-wide DuckDB configured like :func:`connect`; close it after use.

    A cursor costs microseconds where a new DuckDB costs 15-40 ms. Use it for scans and queries
    that create no tables or views other than ones local to the cursor (``register``); a forked
    child gets a DuckDB of its own.
    """
    return _SHARED.cursor()


_LOGICAL = (
    ("BOOLEAN", "boolean"),
    ("TIMESTAMP", "timestamp"),
    ("DATE", "date"),
    ("DECIMAL", "float"),
    ("DOUBLE", "float"),
    ("FLOAT", "float"),
    ("REAL", "float"),
    ("INT", "integer"),
    ("VARCHAR", "string"),
    ("NULL", "null"),
)


def logical_type(duckdb_type: str) -> str:
    """Map a DuckDB type name to the logical types of ``expected_schema``."""
    upper = duckdb_type.upper()
    if upper.startswith(("INTERVAL", "STRUCT", "MAP", "UNION", "JSON")) or upper.endswith("]"):
        return "string"  # nested and odd types are text to the rules and the warehouse
    for prefix, logical in _LOGICAL:
        if prefix in upper:
            return logical
    return "string"


def columns_of(con: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table expression."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def checksum_sql(columns: list[str], relation_sql: str) -> str:
    """An order-independent checksum query: the sum of row hashes, mod 2**64, with the row count."""
    if not columns:
        return f"SELECT count(*), 0 FROM {relation_sql}"
    cols = ", ".join(quote_ident(c) for c in columns)
    return f"SELECT count(*), coalesce(sum(hash({cols})::HUGEINT) % 18446744073709551616, 0) FROM {relation_sql}"


def describe(uri: str, con: duckdb.DuckDBPyConnection | None = None) -> DatasetRef:
    """Row count, logical column types, checksum and size of a staged dataset."""
    own = con is None
    con = con or shared_cursor()
    try:
        relation = scan_sql(uri)
        types = columns_of(con, relation)
        row = con.execute(checksum_sql(list(types), relation)).fetchall()[0]
        return _ref(uri, int(row[0]), types, int(row[1]))
    finally:
        if own:
            con.close()


def _ref(uri: str, rows: int, types: dict[str, str], total: int) -> DatasetRef:
    digest = hashlib.sha256(f"{rows}|{sorted(types.items())}|{total}".encode()).hexdigest()[:32]
    size = sum(os.path.getsize(f) for f in part_files(uri))
    columns = {name: logical_type(t) for name, t in types.items()}
    return DatasetRef(uri=uri, row_count=rows, columns=columns, checksum=digest, bytes=size)


def iter_batches(uri: str, batch_rows: int = 100_000, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a staged dataset as Arrow record batches, reconciled to one schema."""
    con = shared_cursor()
    try:
        cols = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        reader = con.sql(f"SELECT {cols} FROM {scan_sql(uri)}").to_arrow_reader(batch_rows)
        yield from reader
    finally:
        con.close()


def read_frame(uri: str) -> pd.DataFrame:
    """A whole staged dataset as pandas (for Python transformations and small data only)."""
    con = shared_cursor()
    try:
        return con.execute(f"SELECT * FROM {scan_sql(uri)}").df()
    finally:
        con.close()
