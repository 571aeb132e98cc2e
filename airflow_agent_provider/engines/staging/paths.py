"""Where staged datasets live: a run's dataset URI under the staging root, and its part files.

Local folders (or ``file://``) are used in place; any other URI goes through fsspec, and its
part files are cached in a local temp folder for reading.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
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
    """The fsspec filesystem of a URI and the path within it."""
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def clear(uri: str) -> None:
    """Remove what an earlier try left, so a retry restages from scratch (idempotent)."""
    if is_local(uri):
        import shutil

        shutil.rmtree(local_path(uri), ignore_errors=True)
        Path(local_path(uri)).mkdir(parents=True, exist_ok=True)
        return
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def part_files(uri: str) -> list[str]:
    """The local paths of a dataset's part files (remote datasets are cached locally first)."""
    uri = uri.rstrip("/")
    if not is_local(uri):
        return _cached_parts(uri)
    folder = Path(local_path(uri))
    if folder.is_file():
        return [str(folder)]
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        raise StagingError(f"staged dataset {uri} is missing or empty (no parquet files)")
    return files


def _cached_parts(uri: str) -> list[str]:
    fs, path = filesystem(uri)
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
