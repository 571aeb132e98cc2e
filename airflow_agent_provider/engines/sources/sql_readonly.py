"""SQL sources are read, never written: their connections are opened read-only.

- SQLite: the database file is opened through a ``file:<path>?mode=ro`` URI. A file that does not
  exist is an error naming the path, and nothing is created (a plain ``sqlite:///nope.db`` would
  create an empty ``nope.db`` and fail later with ``no such table``).
- PostgreSQL: every connection sets ``default_transaction_read_only = on`` when it opens, so a
  query that would write fails with ``cannot execute ... in a read-only transaction``.
- Other databases are used as their connection is configured (give the connection a read-only user).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_MEMORY = ("", ":memory:")


class SourceDatabaseMissing(FileNotFoundError):
    """A SQLite source database file that does not exist."""


def read_only_engine(engine: Engine) -> Engine:
    """The same database as ``engine``, opened read-only where the dialect allows (see the module docstring).

    :raises SourceDatabaseMissing: a SQLite database file that does not exist (nothing is created).
    """
    name = engine.dialect.name
    if name == "sqlite":
        return _sqlite_read_only(engine)
    if name == "postgresql":
        _postgres_read_only(engine)
    return engine


def _sqlite_read_only(engine: Engine) -> Engine:
    import sqlite3

    import sqlalchemy

    database = engine.url.database or ""
    if database in _MEMORY or database.startswith("file:"):
        return engine  # an in-memory database, or a URI the connection already spells out
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise SourceDatabaseMissing(
            f"SQLite database file {path} does not exist (sources are opened read-only; nothing was created)"
        )
    uri = f"{path.as_uri()}?mode=ro"
    engine.dispose()

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return sqlalchemy.create_engine("sqlite://", creator=connect)


def _postgres_read_only(engine: Engine) -> None:
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET SESSION default_transaction_read_only = on")
        finally:
            cursor.close()
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
