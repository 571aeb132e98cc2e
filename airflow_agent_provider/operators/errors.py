"""How a stage's errors reach Airflow: bad input fails the task for good, transient trouble is retried."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from airflow_agent_provider.exceptions import AgentProviderError, SourceError

_NOT_TRANSIENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_DB_WORDS = ("could not connect", "connection refused", "timeout", "timed out", "server closed")
# An HTTP source that still gets these after its own retries: the service may recover by the task's retry.
_TRANSIENT_HTTP = re.compile(r"^HTTP (5\d\d|429|408)\b")


class StageFailed(AirflowFailException):
    """A stage failed on input that a retry cannot fix: bad arguments, bad data, bad SQL, unsafe names.

    An ``AirflowFailException``: the task fails at once, without spending its retries.
    """


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is trouble a retry may clear: network, timeouts, 5xx, a DB down."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def _transient_itself(err: BaseException) -> bool:
    if isinstance(err, SourceError) and _TRANSIENT_HTTP.match(err.cause):
        return True
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    if isinstance(err, OSError):
        return not isinstance(err, _NOT_TRANSIENT_OS_ERRORS)
    if type(err).__name__ in ("OperationalError", "InterfaceError"):
        text = str(err).lower()
        return any(word in text for word in _TRANSIENT_DB_WORDS)
    return False


@contextmanager
def stage_errors(task_id: str) -> Iterator[None]:
    """Turn a stage's domain and argument errors into ``StageFailed`` unless a retry may help.

    Transient errors propagate unchanged, so the task's ``retries`` apply to them.
    """
    try:
        yield
    except (ValueError, TypeError, KeyError, AgentProviderError) as err:
        if is_transient(err):
            raise
        raise StageFailed(f"{task_id}: {err}") from err
