"""Reading a staged dataset through DuckDB: scan it, describe it, stream it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.contracts.types import logical_type
from airflow_agent_provider.engines.sqlsafe import quote_ident, sql_literal
from airflow_agent_provider.engines.staging.connection import shared_cursor
from airflow_agent_provider.engines.staging.paths import (
    dataset_bytes,
    filesystem,
    is_local,
    part_files,
    remote_part_paths,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds


def scan_sql(uri: str) -> str:
    """A DuckDB table expression reading a staged dataset."""
    files = ", ".join(sql_literal(f) for f in part_files(uri))
    return f"read_parquet([{files}], union_by_name = true)"


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
        return dataset_ref(uri, int(row[0]), types, int(row[1]))
    finally:
        if own:
            con.close()


def dataset_ref(uri: str, rows: int, types: dict[str, str], total: int) -> DatasetRef:
    """The :class:`DatasetRef` of a dataset whose rows, DuckDB types and checksum sum are known."""
    columns = {name: logical_type(t) for name, t in types.items()}
    return DatasetRef(
        uri=uri, row_count=rows, columns=columns, checksum=checksum(rows, types, total), bytes=dataset_bytes(uri)
    )


def checksum(rows: int, types: Mapping[str, str], total: int) -> str:
    """A dataset's checksum from its row count, its columns' DuckDB types and the sum of its 64-bit row
    hashes (order-independent); a warehouse staging table's is made the same way from its own row hashes."""
    return hashlib.sha256(f"{rows}|{sorted(types.items())}|{total}".encode()).hexdigest()[:32]


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


def arrow_dataset(uri: str, schema: pa.Schema | None = None) -> ds.Dataset:
    """A ``pyarrow.dataset`` over a dataset's part files (through its staging area's filesystem when remote)."""
    import pyarrow.dataset as ds

    if is_local(uri):
        return ds.dataset(part_files(uri), schema=schema, format="parquet")
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, _ = filesystem(uri.rstrip("/"))
    files = remote_part_paths(uri)
    return ds.dataset(files, schema=schema, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
