"""Object-store staging: the filesystem the operators opened for a staging root, found by URI.

A staging root is a local folder or an object-store URI in Airflow's form,
``s3://<conn_id>@<bucket>/<prefix>`` (``gs://``, ``abfs://`` alike). The engines stay free of
Airflow: the operators open such a root through Airflow's ``ObjectStoragePath`` (credentials from
the connection) and hand over a :class:`StagingArea` — the root as written, a ready fsspec
filesystem and the root's path in it — by mounting it here. Engines then find the area of any
dataset URI under that root with :func:`area_for`; a URI under no mounted root is opened by the
opener the operators installed (:func:`set_opener`), e.g. an upstream dataset staged by another
worker.

DuckDB reads remote part files in place, in byte ranges, through the area's filesystem
registered with it (``register_filesystem``), so ``read_parquet(..., union_by_name)`` and every
query over staged data behave as on a local folder, without downloading whole datasets first
(benchmarks/README.md "Object-store staging" has the measurements behind that choice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.engines.staging.paths import StagingError

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class StagingArea:
    """An opened object-store staging root.

    :param root: the root as the DAG or config wrote it, e.g. ``s3://aws_default@bucket/staging``;
        dataset URIs under it (what XCom carries) start with it.
    :param fs: the fsspec filesystem of the root, authenticated from its connection.
    :param path: the root's path within ``fs`` (``bucket/staging``).
    """

    root: str
    fs: Any
    path: str

    @property
    def protocol(self) -> str:
        return self.root.split("://", 1)[0]

    def covers(self, uri: str) -> bool:
        uri = uri.rstrip("/")
        return uri == self.root or uri.startswith(self.root + "/")

    def fs_path(self, uri: str) -> str:
        """The path of a URI under this root within ``fs``."""
        if not self.covers(uri):
            raise StagingError(f"{uri} is not under the staging root {self.root}")
        return self.path + uri.rstrip("/")[len(self.root) :]

    def duckdb_path(self, fs_path: str) -> str:
        """A path of ``fs`` as DuckDB reads it through the registered filesystem."""
        return f"{self.protocol}://{fs_path}"


Opener = Callable[[str], StagingArea]


class _Areas:
    """The mounted areas of this process, and the opener for URIs under none of them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mounted: dict[str, StagingArea] = {}
        self.opener: Opener | None = None
        self.listeners: list[Callable[[StagingArea], None]] = []


_AREAS = _Areas()


def mount(area: StagingArea) -> StagingArea:
    """Make ``area`` the filesystem of every URI under its root, in this process.

    DuckDB routes a protocol (``s3://``) to one filesystem, so a mounted area of the same protocol
    on another filesystem (another connection) is unmounted: the newest wins, and the older one is
    opened again when a later task needs it. One stage therefore reads one connection per protocol.
    """
    with _AREAS.lock:
        for root, other in list(_AREAS.mounted.items()):
            if other.protocol == area.protocol and other.fs is not area.fs:
                del _AREAS.mounted[root]
        _AREAS.mounted[area.root] = area
        listeners = list(_AREAS.listeners)
    for listener in listeners:
        listener(area)
    return area


def unmount_all() -> None:
    """Forget every mounted area (tests; a DuckDB keeps what was registered with it)."""
    with _AREAS.lock:
        _AREAS.mounted.clear()


def set_opener(opener: Opener | None) -> None:
    """Install the callable that opens the area of a remote URI under no mounted root."""
    with _AREAS.lock:
        _AREAS.opener = opener


def on_mount(listener: Callable[[StagingArea], None]) -> None:
    """Call ``listener`` with every area mounted from now on (the shared DuckDB registers its filesystem)."""
    with _AREAS.lock:
        _AREAS.listeners.append(listener)


def mounted_area(uri: str) -> StagingArea | None:
    """The mounted area whose root is the longest prefix of ``uri``, if any."""
    with _AREAS.lock:
        found = [area for area in _AREAS.mounted.values() if area.covers(uri)]
    return max(found, key=lambda area: len(area.root)) if found else None


def area_for(uri: str) -> StagingArea:
    """The area of a remote URI: a mounted one, else one the installed opener opens (and mounts)."""
    area = mounted_area(uri)
    if area is not None:
        return area
    with _AREAS.lock:
        opener = _AREAS.opener
    if opener is None:
        raise StagingError(
            f"staged data at {uri}: no filesystem is open for it; object-store staging roots are opened "
            "by the operators from an Airflow connection (s3://<conn_id>@<bucket>/<prefix>)"
        )
    opened = opener(uri)
    if not opened.covers(uri):
        raise StagingError(f"staged data at {uri}: the opener returned {opened.root}, which does not hold it")
    return mount(opened)


def register_filesystems(con: duckdb.DuckDBPyConnection) -> None:
    """Register every mounted area's filesystem with a DuckDB (one per protocol; already registered ones kept)."""
    with _AREAS.lock:
        areas = list(_AREAS.mounted.values())
    for area in areas:
        register_filesystem(con, area)


def register_filesystem(con: duckdb.DuckDBPyConnection, area: StagingArea, *, replace: bool = False) -> None:
    """Register ``area``'s filesystem with a DuckDB unless one of its protocol already is (``replace``: it wins)."""
    registered = set(_protocols(area.fs)) & set(con.list_filesystems())
    if registered and not replace:
        return
    for name in registered:
        con.unregister_filesystem(name)
    con.register_filesystem(area.fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
