"""How a stage's errors reach Airflow: bad input fails the task for good, transient trouble is retried.

Every error a stage raises to Airflow on purpose is a ``StageFailed``; the others (a database or an
API that is down) propagate unchanged so the task's ``retries`` apply to them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_agent_provider.exceptions import AgentProviderError, SourceUnavailable

_NOT_TRANSIENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
# PostgreSQL SQLSTATE classes a later try may not meet: connection exception, insufficient resources,
# operator intervention (a cancelled statement, a server shutting down or still starting).
_TRANSIENT_PG_CLASSES = ("08", "53", "57")


class StageFailed(AirflowFailException):
    """A stage failed on input that a retry cannot fix: bad arguments, bad data, bad SQL, unsafe names.

    An ``AirflowFailException``: the task fails at once, without spending its retries.
    """


class QuarantineFailed(StageFailed):
    """The clean rows still fail validation (issues no row rule expresses, or another dataset failed).

    Not retried: the same data fails the same way. ``remaining_issues`` names what is still wrong.
    """

    def __init__(self, message: str, *, remaining_issues: list[str]) -> None:
        super().__init__(message)
        self.remaining_issues = remaining_issues


class SchemaRemediationFailed(StageFailed):
    """The data still fails validation after the allowed iterations (or Claude could not answer).

    Not retried: the same data and the same plans would fail again. ``iterations`` holds every plan
    and what validation found after it; ``remaining_issues`` what is still wrong.
    """

    def __init__(self, message: str, *, iterations: list[dict[str, Any]], remaining_issues: list[str]) -> None:
        super().__init__(message)
        self.iterations = iterations
        self.remaining_issues = remaining_issues


class PipelineFailed(StageFailed):
    """A stage of the run failed: the report is written, and the run is marked failed."""


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
    if isinstance(err, SourceUnavailable):
        return True
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    if isinstance(err, OSError):  # requests' ConnectionError and Timeout are OSErrors too
        return not isinstance(err, _NOT_TRANSIENT_OS_ERRORS)
    return _database_unreachable(err)


def _database_unreachable(err: BaseException) -> bool:
    """A lost or refused database connection (never a bad query): by the driver's own error types."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")  # not loaded: the error cannot be one of its types
    if sqlalchemy_exc is not None:
        if isinstance(err, sqlalchemy_exc.DisconnectionError):
            return True
        if isinstance(err, sqlalchemy_exc.DBAPIError) and err.connection_invalidated:
            return True
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is None or not isinstance(err, psycopg2.OperationalError | psycopg2.InterfaceError):
        return False
    code = getattr(err, "pgcode", None)
    return code is None or code[:2] in _TRANSIENT_PG_CLASSES  # no SQLSTATE: the server was never reached


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
