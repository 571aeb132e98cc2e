"""Staged datasets: Parquet part files under a run-scoped folder of the staging root.

A dataset is a folder of ``part-NNNNN.parquet`` files written chunk by chunk, so no stage ever
holds a whole table in memory. Readers go through DuckDB (``read_parquet(..., union_by_name)``),
which also reconciles chunks whose inferred types differ. Local folders are read in place;
other fsspec URIs (``s3://`` ...) are written through fsspec and cached locally for reading.

One job per module:

- :mod:`.paths` where datasets live: the root, a run's dataset URI, part files, local or fsspec;
- :mod:`.writer` :class:`DatasetWriter`, which folds the checksum in as it writes;
- :mod:`.reader` scanning, describing (rows, types, checksum) and streaming a dataset;
- :mod:`.connection` bounded in-memory DuckDBs and the process-wide one scans share.

Logical types and their DuckDB types are in :mod:`airflow_agent_provider.contracts.types`.

The names below are the public surface; import them from here.
"""

from airflow_agent_provider.engines.sqlsafe import quote_ident, sql_literal
from airflow_agent_provider.engines.staging.connection import ProcessDuckDB, connect, shared_cursor
from airflow_agent_provider.engines.staging.paths import (
    StagingError,
    part_files,
    safe_segment,
    stage_uri,
)
from airflow_agent_provider.engines.staging.reader import (
    checksum_sql,
    columns_of,
    describe,
    iter_batches,
    read_frame,
    scan_sql,
)
from airflow_agent_provider.engines.staging.writer import COMPRESSION, DatasetWriter

__all__ = [
    "COMPRESSION",
    "DatasetWriter",
    "ProcessDuckDB",
    "StagingError",
    "checksum_sql",
    "columns_of",
    "connect",
    "describe",
    "iter_batches",
    "part_files",
    "quote_ident",
    "read_frame",
    "safe_segment",
    "scan_sql",
    "shared_cursor",
    "sql_literal",
    "stage_uri",
]
