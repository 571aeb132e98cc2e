"""Source readers of the extract stage: SQL queries, HTTP APIs and files, each streamed into a :class:`Sink`.

A reader pulls its source chunk by chunk and hands Arrow tables to the sink, which writes them
to the staged dataset. Readers never hold a whole table in memory, never import Airflow, and
raise :class:`~airflow_agent_provider.exceptions.SourceError` with a cause a data engineer can act on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines.staging import DatasetWriter
from airflow_agent_provider.exceptions import AgentProviderError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

LOG_EVERY_S = 5.0


class Cancelled(AgentProviderError):
    """Another source failed, so this one stopped early; never reported on its own."""


class _WriteBehind:
    """Writes chunks on a thread of its own, so reading the next chunk overlaps compressing this one.

    At most ``depth`` chunks wait in the queue, so memory stays bounded; a write error is raised
    to the reader at its next ``put`` or at ``close``.
    """

    _DONE = object()

    def __init__(self, write: Callable[[Any], None], name: str, depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._discard = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"stage-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not self._DONE:
            if self._error is None and not self._discard:
                try:
                    self._write(chunk)
                except BaseException as err:
                    self._error = err

    def put(self, chunk: Any) -> None:
        self._raise()
        self._queue.put(chunk)

    def close(self, *, discard: bool = False) -> None:
        """Wait for the queued chunks to be written (or dropped, with ``discard``)."""
        if not self._closed:
            self._closed = True
            self._discard = discard
            self._queue.put(self._DONE)
            self._thread.join()
        if not discard:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class Sink:
    """Where a reader puts its chunks: the staged dataset, with cancellation, restart and progress.

    Use it as a context manager: leaving the block on an error stops its writer thread.

    :param name: the source name (used in progress lines and errors).
    :param uri: the folder URI of the staged dataset.
    :param chunk_size: rows per chunk the reader should aim for.
    :param cancelled: set when another source failed; the next write raises :class:`Cancelled`.
    :param log: receives progress lines, at most every ``LOG_EVERY_S`` seconds.
    """

    def __init__(
        self,
        name: str,
        uri: str,
        *,
        chunk_size: int,
        cancelled: threading.Event | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.uri = uri
        self.chunk_size = chunk_size
        self.pages: int | None = None
        self.warnings: list[str] = []
        self._cancelled = cancelled or threading.Event()
        self._log = log
        self._last_log = time.monotonic()
        self._open()

    def _open(self) -> None:
        self.rows = 0
        self._has_schema = False
        self._writer = DatasetWriter(self.uri, progress=self.progress)
        self._behind = _WriteBehind(self._writer.write, self.name)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._behind.close(discard=True)

    def write(self, chunk: pa.Table | pa.RecordBatch) -> None:
        """Stage one chunk (raises :class:`Cancelled` once another source failed)."""
        self.check_cancelled()
        if chunk.num_columns == 0 or (chunk.num_rows == 0 and self._has_schema):
            return
        self._behind.put(chunk)
        self.rows += chunk.num_rows
        self._has_schema = True

    def restart(self) -> None:
        """Discard what was staged so far: the reader starts over (e.g. with wider column types)."""
        self._behind.close(discard=True)
        self.check_cancelled()
        self._open()

    def finish(self) -> DatasetRef:
        """Close the dataset and describe it; a dataset needs at least its column names."""
        self._behind.close()
        if not self._has_schema:
            raise SourceError(
                self.name,
                "returned no records and no column names, so there is nothing to stage "
                "(an empty file or an empty JSON list has no schema)",
            )
        return self._writer.finish()

    def check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"source {self.name!r} stopped because another source failed")

    def sleep(self, seconds: float) -> None:
        """Wait before a retry; wakes up early (and raises :class:`Cancelled`) when another source fails."""
        self._cancelled.wait(seconds)
        self.check_cancelled()

    def say(self, line: str) -> None:
        if self._log is not None:
            self._log(f"{self.name}: {line}")

    def progress(self, count: int, elapsed: float, unit: str = "rows") -> None:
        """Log ``count`` and its rate, at most every ``LOG_EVERY_S`` seconds."""
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self.say(f"{count} {unit} ({count / max(elapsed, 1e-9):.0f} {unit.split(maxsplit=1)[0]}/s)")


def rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup record batches of any size into tables of exactly ``rows`` rows (the last one fewer)."""
    import pyarrow as pa

    pending: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        pending = table if pending is None else pa.concat_tables([pending, table])
        while pending.num_rows >= rows:
            yield pending.slice(0, rows)
            pending = pending.slice(rows)
    if pending is not None and pending.num_rows:
        yield pending


def first_line(text: str, limit: int = 300) -> str:
    """The first line of an error text, cut to ``limit`` characters."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
