"""Where staged datasets live: a run's dataset URI under the staging root, and its part files.

Local folders (or ``file://``) are used in place; any other URI is under an object-store staging
root that the operators opened (:mod:`airflow_agent_provider.engines.staging.area`): written through
its fsspec filesystem and read in place by DuckDB, which has that filesystem registered.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from airflow_agent_provider.contracts.identifiers import check_name
from airflow_agent_provider.exceptions import AgentProviderError

_SEGMENT_RE = re.compile(r"[^A-Za-z0-9._-]+")


class StagingError(AgentProviderError):
    """A staged dataset is missing, unreadable, or would escape the staging root."""


def safe_segment(value: str) -> str:
    """A path segment from a dag, run or task id: readable, collision-free, never ``..`` or ``/``."""
    cleaned = _SEGMENT_RE.sub("_", str(value)).strip("._") or "_"
    if cleaned == value:
        return value
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:8]
    return f"{cleaned[:80]}-{digest}"


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def stage_uri(root: str, dag_id: str, run_id: str, task_id: str, dataset: str, *, map_index: int | None = None) -> str:
    """The folder URI of one dataset of one task of one run: ``root/dag/run/task[/map_i]/dataset``."""
    check_name(dataset, "dataset name")
    parts = [safe_segment(dag_id), safe_segment(run_id), safe_segment(task_id)]
    if map_index is not None and map_index >= 0:
        parts.append(f"map_{int(map_index)}")
    parts.append(dataset)
    return root.rstrip("/") + "/" + "/".join(parts)


def filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem of a remote URI, from the staging area the operators opened, and the path within it."""
    from airflow_agent_provider.engines.staging import area as staging_area

    area = staging_area.area_for(uri)
    return area.fs, area.fs_path(uri)


def clear(uri: str) -> None:
    """Remove what an earlier try left, so a retry restages from scratch (idempotent)."""
    if is_local(uri):
        import shutil

        shutil.rmtree(local_path(uri), ignore_errors=True)
        Path(local_path(uri)).mkdir(parents=True, exist_ok=True)
        return
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def part_files(uri: str) -> list[str]:
    """The paths DuckDB reads a dataset's part files by: local paths, or remote ones that DuckDB reads in
    place (in byte ranges) through the staging area's filesystem registered with it."""
    uri = uri.rstrip("/")
    if not is_local(uri):
        from airflow_agent_provider.engines.staging import area as staging_area
        from airflow_agent_provider.engines.warehouse_staging import is_table_uri

        if is_table_uri(uri):
            raise StagingError(
                f"{uri} is a warehouse staging table (ExtractOperator staging_conn_id): this stage reads staged "
                "Parquet only. In warehouse-native mode validate, quarantine, schema remediation, SQL "
                "transformations and load run in the warehouse; Python transformation steps would have to read "
                "the rows into the worker and are refused: write the step in SQL, or stage this data as Parquet "
                "(no staging_conn_id) to run Python on it"
            )
        area = staging_area.area_for(uri)
        return [area.duckdb_path(name) for name in remote_part_paths(uri)]
    folder = Path(local_path(uri))
    if folder.is_file():
        return [str(folder)]
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise StagingError(f"staged dataset {uri} is missing or empty (no parquet files)")
    return files


def remote_part_paths(uri: str) -> list[str]:
    """A remote dataset's part files as paths of its staging area's filesystem."""
    fs, path = filesystem(uri.rstrip("/"))
    fs.invalidate_cache(path)  # another process (worker) may have written it since this one last listed it
    try:
        names = sorted(str(p) for p in fs.ls(path, detail=False) if str(p).endswith(".parquet"))
    except FileNotFoundError:
        names = []
    if not names:
        raise StagingError(f"staged dataset {uri} is missing or empty (no parquet files)")
    return names


def dataset_bytes(uri: str) -> int:
    """The size of a dataset's part files in bytes."""
    if is_local(uri):
        return sum(os.path.getsize(f) for f in part_files(uri))
    fs, path = filesystem(uri.rstrip("/"))
    return sum(int(entry["size"]) for entry in fs.ls(path, detail=True) if str(entry["name"]).endswith(".parquet"))
