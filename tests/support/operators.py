"""What the operator tests share: the paths of a test's sources, the warehouse's tables, a context for ``execute``."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any


@dataclass(frozen=True)
class Sources:
    """Paths of the source files of one test."""

    orders_db: Path
    regions_csv: Path
    good_csv: Path
    malformed_csv: Path
    first_csv: Path
    second_csv: Path
    warehouse_db: Path

    def conf(self, **extra: Any) -> dict[str, Any]:
        """The run conf the test DAGs read their paths from."""
        paths = {name: str(getattr(self, name)) for name in self.__dataclass_fields__}
        return {**paths, "missing_csv": str(self.good_csv.with_name("missing.csv")), **extra}


def warehouse_tables(path: Path) -> list[str]:
    """The tables of a SQLite warehouse (none when the file was never created)."""
    if not path.exists():
        return []
    con = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        con.close()


@dataclass
class TaskInstanceStandIn:
    """What the operators use of Airflow's RuntimeTaskInstance, for calling ``execute`` directly."""

    task_id: str
    dag_id: str = "op_direct"
    run_id: str = "manual__2026-11-10T00:00:00+00:00"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def direct_context(task_id: str, *, interval_end: datetime | None = None) -> dict[str, Any]:
    """A task context for ``op.execute(context)`` with a data interval of the day before ``interval_end``."""
    from datetime import timedelta

    end = interval_end or datetime(2026, 11, 10, tzinfo=timezone.utc)
    ti = TaskInstanceStandIn(task_id=task_id)
    return {
        "ti": ti,
        "run_id": ti.run_id,
        "data_interval_start": end - timedelta(days=1),
        "data_interval_end": end,
        "dag_run": SimpleNamespace(run_after=end),
    }
