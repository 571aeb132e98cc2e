"""Staged datasets: Parquet part files under a run-scoped folder of the staging root.

A dataset is a folder of ``part-NNNNN.parquet`` files written chunk by chunk, so no stage ever
holds a whole table in memory. Readers go through DuckDB (``read_parquet(..., union_by_name)``),
which also reconciles chunks whose inferred types differ. Local folders are read in place, and
so are object-store URIs (``s3://<conn_id>@<bucket>/...``), through the staging area the operators
opened for them (:mod:`.area`).

One job per module:

- :mod:`.paths` where datasets live: a run's dataset URI under the root, part files, local or fsspec;
- :mod:`.writer` :class:`DatasetWriter`, which folds the checksum in as it writes;
- :mod:`.reader` scanning, describing (rows, types, checksum) and streaming a dataset;
- :mod:`.connection` bounded in-memory DuckDBs and the process-wide one scans share;
- :mod:`.area` object-store staging roots the operators opened (a ready filesystem per root);
- :mod:`.retention` when a run's staged data is removed, and removing it.

The staging root is a setting (``airflow_agent_provider.settings``); logical types and their DuckDB
types are in ``contracts.types``. Other modules import the names below from here.
"""

from airflow_agent_provider.engines.staging.connection import ProcessDuckDB, connect, shared_cursor
from airflow_agent_provider.engines.staging.paths import (
    StagingError,
    dataset_bytes,
    part_files,
    safe_segment,
    stage_uri,
)
from airflow_agent_provider.engines.staging.reader import (
    arrow_dataset,
    columns_of,
    describe,
    iter_batches,
    read_frame,
    scan_sql,
)
from airflow_agent_provider.engines.staging.writer import DatasetWriter, write_query

__all__ = [
    "DatasetWriter",
    "ProcessDuckDB",
    "StagingError",
    "arrow_dataset",
    "columns_of",
    "connect",
    "dataset_bytes",
    "describe",
    "iter_batches",
    "part_files",
    "read_frame",
    "safe_segment",
    "scan_sql",
    "shared_cursor",
    "stage_uri",
    "write_query",
]
