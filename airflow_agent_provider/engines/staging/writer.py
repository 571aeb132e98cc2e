"""Writing a staged dataset chunk by chunk, folding its checksum in as it goes.

Staged data is short-lived scratch, so parts are written for speed: snappy (which every Parquet
reader handles) and dictionary pages for text columns only. Because the writer hashes each chunk
while it is in memory, finishing a dataset reads only the part files' footers.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines.staging.connection import shared_cursor
from airflow_agent_provider.engines.staging.paths import clear, filesystem, is_local, local_path
from airflow_agent_provider.engines.staging.reader import checksum_sql, columns_of, dataset_ref, describe, scan_sql

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

COMPRESSION = "snappy"
_CHECKSUM_MOD = 1 << 64
_CHUNK_VIEW = "aap_staged_chunk"


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
        clear(self.uri)

    @property
    def checksum_on_write(self) -> bool:
        """True while every chunk hashed alike, so ``finish()`` can skip re-reading the dataset
        (it still checks the reconciled column types against the chunks' and reads it if they differ)."""
        return bool(self._checksum.exact and self._checksum.columns)

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
            self.write(empty_table(schema or pa.schema([])))
        if not self.checksum_on_write:
            return describe(self.uri)
        con = shared_cursor()
        try:
            types = columns_of(con, scan_sql(self.uri))  # reads the parts' footers only
            if list(types.items()) != self._checksum.columns:  # the reconciled read differs from a chunk
                return describe(self.uri, con)
            return dataset_ref(self.uri, self.rows, types, self._checksum.total)
        finally:
            con.close()


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table with no rows, without ``Schema.empty_table()`` or ``pyarrow.array([])``: both import pandas."""
    import pyarrow as pa

    return pa.Table.from_arrays([pa.nulls(0, field.type) for field in schema], schema=schema)


def write_query(con: duckdb.DuckDBPyConnection, sql: str, uri: str, batch_rows: int = 500_000) -> DatasetRef:
    """Stage the rows of a DuckDB query at ``uri``, batch by batch."""
    reader = con.sql(sql).to_arrow_reader(batch_rows)
    writer = DatasetWriter(uri)
    for batch in reader:
        writer.write(batch)
    return writer.finish(reader.schema)


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
    if is_local(target):
        pq.write_table(table, local_path(target), **options)
        return
    fs, path = filesystem(target)
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle, **options)


def _as_table(chunk: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(chunk, pa.Table):
        return chunk
    if isinstance(chunk, pa.RecordBatch):
        return pa.Table.from_batches([chunk])
    return pa.Table.from_pandas(chunk, preserve_index=False)
