"""DuckDB for staged data: bounded in-memory databases, and one per process that scans share."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_agent_provider.engines.settings import current
from airflow_agent_provider.engines.sqlsafe import sql_literal
from airflow_agent_provider.engines.staging import area as staging_area

if TYPE_CHECKING:
    import duckdb


def connect(*, memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with bounded memory (default: the ``duckdb_memory`` setting) that spills to disk."""
    import duckdb

    settings = current()
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = {sql_literal(memory_limit or settings.duckdb_memory)}")
    con.execute(f"SET temp_directory = {sql_literal(settings.spill_folder)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    staging_area.register_filesystems(con)  # object-store staging areas: their files are read in place
    _OPEN.add(con)  # and areas mounted later (an upstream dataset opened on first read) join it then
    return con


_OPEN: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
"""The DuckDBs :func:`connect` made in this process that are still referenced (a forked child starts empty)."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_OPEN.clear)


def _register_with_open_databases(area: staging_area.StagingArea) -> None:
    """A newly mounted area's filesystem serves its protocol in every open DuckDB from now on."""
    import duckdb

    for con in list(_OPEN):
        try:
            staging_area.register_filesystem(con, area, replace=True)
        except duckdb.Error:  # closed, or its configuration is locked (the sandboxes read Arrow, not files)
            _OPEN.discard(con)


staging_area.on_mount(_register_with_open_databases)


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
