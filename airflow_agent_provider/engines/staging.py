"""Staged datasets: Parquet part files under a run-scoped folder of the staging root.

A dataset is a folder of ``part-NNNNN.parquet`` files written chunk by chunk, so no stage ever
holds a whole table in memory. Readers go through DuckDB (``read_parquet(..., union_by_name)``),
which also reconciles chunks whose inferred types differ. Local folders are read in place;
other fsspec URIs (``s3://`` ...) are written through fsspec and cached locally for reading.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
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
    """Write one dataset chunk by chunk; ``finish()`` describes what was written."""

    def __init__(self, uri: str, *, progress: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.rows = 0
        self._parts = 0
        self._schema: pa.Schema | None = None
        self._progress = progress
        self._started = time.monotonic()
        _clear(self.uri)

    def write(self, chunk: pa.Table | pa.RecordBatch | pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = _as_table(chunk)
        if table.num_rows == 0 and self._parts > 0:
            return
        target = f"{self.uri}/part-{self._parts:05d}.parquet"
        if _is_local(target):
            pq.write_table(table, _local(target), compression="zstd")
        else:
            fs, path = _filesystem(target)
            with fs.open(path, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
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
        return describe(self.uri)


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
    con = con or connect()
    try:
        relation = scan_sql(uri)
        types = columns_of(con, relation)
        row = con.execute(checksum_sql(list(types), relation)).fetchall()[0]
        digest = hashlib.sha256(f"{row[0]}|{sorted(types.items())}|{row[1]}".encode()).hexdigest()[:32]
        size = sum(os.path.getsize(f) for f in part_files(uri))
        columns = {name: logical_type(t) for name, t in types.items()}
        return DatasetRef(uri=uri, row_count=int(row[0]), columns=columns, checksum=digest, bytes=size)
    finally:
        if own:
            con.close()


def iter_batches(uri: str, batch_rows: int = 100_000, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a staged dataset as Arrow record batches, reconciled to one schema."""
    con = connect()
    try:
        cols = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        reader = con.sql(f"SELECT {cols} FROM {scan_sql(uri)}").to_arrow_reader(batch_rows)
        yield from reader
    finally:
        con.close()


def read_frame(uri: str) -> pd.DataFrame:
    """A whole staged dataset as pandas (for Python transformations and small data only)."""
    con = connect()
    try:
        return con.execute(f"SELECT * FROM {scan_sql(uri)}").df()
    finally:
        con.close()
