"""The reference workload: seeded events, users and campaigns as CSV files, and the two warehouse targets.

Sources: ``events.csv`` (the big one), ``users.csv`` and ``campaigns.csv`` — three *file* sources in
CSV, the representative path here because every contender reads the same bytes (pandas
``read_csv``, DuckDB ``read_csv``, our extract engine) with no database driver in between.
Columns follow ``scripts/sample_data.py`` (the reference DAG's sample data).

Generation is vectorised (numpy + pyarrow), chunk by chunk with a seed per chunk, so 10M events
take seconds and the bytes depend only on (size, seed). Files are cached under
``var/bench/workload/<size>-s<seed>-v<version>/`` (``var/bench`` is ``$AGENT_PROVIDER_BENCH_DIR`` when
set); ``manifest.json`` is written last and marks a complete set.

Targets: ``fact_events`` (every event enriched with its user's country and plan and its campaign's
channel, upserted by ``event_id``) and ``user_engagement_daily`` (one row per user per day, upserted
by ``(user_id, date)``). Their SQL is shared by our pipeline and the DuckDB limit; the pandas
baseline implements the same result in pandas.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

VERSION = 1
SEED = 20261101
CHUNK_ROWS = 1_000_000
DAYS = 7
START = date(2026, 11, 1)
EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
EVENT_WEIGHTS = (0.55, 0.3, 0.1, 0.05)
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA")
PLANS = ("free", "pro", "team")
CHANNELS = ("email", "search", "social", "display")
N_CAMPAIGNS = 50
HEAVY_USERS = 3
HEAVY_SHARE = 0.08
ANOMALY_EVENTS = 100
SIZES = {"1k": 1_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
REPO = Path(__file__).resolve().parent.parent
BENCH_DIR_ENV = "AGENT_PROVIDER_BENCH_DIR"


def bench_dir() -> Path:
    """Where workloads, scratch data and the probes' Airflow home live (default ``var/bench``)."""
    return Path(os.environ.get(BENCH_DIR_ENV) or REPO / "var" / "bench")


@dataclass(frozen=True)
class Workload:
    """One generated workload on disk."""

    size: str
    events: int
    users: int
    campaigns: int
    folder: Path
    generated_s: float = 0.0
    bytes: int = 0

    def path(self, source: str) -> str:
        return str(self.folder / f"{source}.csv")


def users_for(events: int) -> int:
    """About 100 events per user over the week, at least 1,000 and at most 100,000 users."""
    return max(1_000, min(100_000, events // 100))


def size_rows(size: str) -> int:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
    return SIZES[size]


def ensure(size: str, *, seed: int = SEED, root: Path | None = None) -> Workload:
    """The workload of ``size``, generated unless a complete copy is cached under ``root`` (default: bench_dir())."""
    events = size_rows(size)
    folder = (root or bench_dir()) / "workload" / f"{size}-s{seed}-v{VERSION}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        return Workload(**{**json.loads(manifest.read_text()), "folder": folder})
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    n_users = users_for(events)
    _write_events(folder / "events.csv", events, n_users, seed)
    _write_table(folder / "users.csv", users_table(n_users, seed))
    _write_table(folder / "campaigns.csv", campaigns_table(N_CAMPAIGNS, seed))
    written = sum(p.stat().st_size for p in folder.glob("*.csv"))
    workload = Workload(size, events, n_users, N_CAMPAIGNS, folder, round(time.perf_counter() - started, 3), written)
    fields = {k: v for k, v in workload.__dict__.items() if k != "folder"}
    manifest.write_text(json.dumps(fields, indent=1))
    return workload


def _write_table(path: Path, table: Any) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, path)


def _write_events(path: Path, events: int, n_users: int, seed: int) -> None:
    import pyarrow.csv as pacsv

    heavy = _rng(seed, "heavy").choice(n_users, size=HEAVY_USERS, replace=False) + 1
    writer = None
    try:
        for index, first in enumerate(range(0, events, CHUNK_ROWS)):
            chunk = events_chunk(first, min(CHUNK_ROWS, events - first), n_users, heavy, seed + 1 + index)
            writer = writer or pacsv.CSVWriter(path, chunk.schema)
            writer.write_table(chunk)
    finally:
        if writer is not None:
            writer.close()


def _rng(seed: int, label: str) -> Any:
    import numpy as np

    return np.random.default_rng([seed, sum(label.encode())])


def events_chunk(first: int, rows: int, n_users: int, heavy: Any, seed: int) -> Any:
    """``rows`` events with ids from ``first + 1``: a few heavy users, 5 % purchases, 30 % campaign hits."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    user_id = rng.integers(1, n_users + 1, rows)
    is_heavy = rng.random(rows) < HEAVY_SHARE
    user_id[is_heavy] = rng.choice(heavy, int(is_heavy.sum()))
    kind = rng.choice(len(EVENT_TYPES), rows, p=EVENT_WEIGHTS)
    second = rng.integers(0, DAYS * 86_400, rows)
    purchase = kind == EVENT_TYPES.index("purchase")
    revenue = np.round(rng.uniform(5, 250, rows), 2)
    campaign = rng.integers(0, N_CAMPAIGNS, rows)
    has_campaign = rng.random(rows) < 0.3
    epoch = int(datetime(START.year, START.month, START.day, tzinfo=timezone.utc).timestamp())
    return pa.table(
        {
            "event_id": pa.array(np.arange(first + 1, first + rows + 1, dtype=np.int64)),
            "user_id": pa.array(user_id),
            "event_type": pa.array(EVENT_TYPES).take(pa.array(kind)),
            "event_ts": pa.array(epoch + second, pa.timestamp("s")),
            "revenue": pa.array(revenue, mask=~purchase),
            "session_id": _sessions(user_id, second // 86_400, rng.integers(0, 3, rows)),
            "campaign_id": _campaign_ids(campaign, has_campaign),
        }
    )


def _sessions(user_id: Any, day: Any, slot: Any) -> Any:
    """``s<user>-<yyyymmdd>-<slot>``, built column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    days = pa.array([f"{date.fromordinal(START.toordinal() + d):%Y%m%d}" for d in range(DAYS)])
    parts = [pc.cast(pa.array(user_id), pa.string()), days.take(pa.array(day)), pc.cast(pa.array(slot), pa.string())]
    return pc.binary_join_element_wise("s", parts[0], "-", parts[1], "-", parts[2], "")


def _campaign_ids(campaign: Any, has_campaign: Any) -> Any:
    import pyarrow as pa

    ids = pa.array([campaign_id(i) for i in range(N_CAMPAIGNS)])
    return ids.take(pa.array(campaign, mask=~has_campaign))


def campaign_id(index: int) -> str:
    return f"C{index + 1:03d}"


def users_table(n_users: int, seed: int) -> Any:
    """User profiles: country, plan (70/25/5 %) and signup date."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = _rng(seed, "users")
    ids = pa.array(np.arange(1, n_users + 1, dtype=np.int64))
    text = pc.cast(ids, pa.string())
    signup = np.datetime64("2025-01-01") + rng.integers(0, 600, n_users).astype("timedelta64[D]")
    return pa.table(
        {
            "user_id": ids,
            "name": pc.binary_join_element_wise("User ", text, ""),
            "email": pc.binary_join_element_wise("user", text, "@example.com", ""),
            "country": pa.array(COUNTRIES).take(pa.array(rng.integers(0, len(COUNTRIES), n_users))),
            "plan": pa.array(PLANS).take(pa.array(rng.choice(len(PLANS), n_users, p=(0.7, 0.25, 0.05)))),
            "signup_date": pa.array(signup),
        }
    )


def campaigns_table(count: int, seed: int) -> Any:
    """Marketing campaigns: id, name, channel, dates and budget."""
    import numpy as np
    import pyarrow as pa

    rng = _rng(seed, "campaigns")
    start = np.datetime64("2026-10-01") + rng.integers(0, 60, count).astype("timedelta64[D]")
    return pa.table(
        {
            "campaign_id": pa.array([campaign_id(i) for i in range(count)]),
            "name": pa.array([f"Campaign {i + 1}" for i in range(count)]),
            "channel": pa.array(CHANNELS).take(pa.array(rng.integers(0, len(CHANNELS), count))),
            "start_date": pa.array(start),
            "end_date": pa.array(start + rng.integers(7, 45, count).astype("timedelta64[D]")),
            "budget": pa.array(np.round(rng.uniform(500, 20_000, count), 2)),
        }
    )


# ---------------------------------------------------------------- what every contender computes

EVENTS_SCHEMA = {
    "event_id": "integer",
    "user_id": "integer",
    "event_type": "string",
    "event_ts": "timestamp",
    "revenue": "float",
    "session_id": "string",
    "campaign_id": "string",
}
USERS_SCHEMA = {"user_id": "integer", "country": "string", "plan": "string"}
CAMPAIGNS_SCHEMA = {"campaign_id": "string", "channel": "string"}

QUALITY_RULES: dict[str, list[dict[str, Any]]] = {
    "events": [
        *({"rule": "not_null", "column": c} for c in ("event_id", "user_id", "event_type", "event_ts", "session_id")),
        {"rule": "unique", "column": "event_id"},
        {"rule": "in_list", "column": "event_type", "values": list(EVENT_TYPES)},
        {"rule": "range", "column": "revenue", "min": 0},
    ],
    "users": [
        {"rule": "not_null", "column": "user_id"},
        {"rule": "unique", "column": "user_id"},
        {"rule": "in_list", "column": "plan", "values": list(PLANS)},
        {"rule": "in_list", "column": "country", "values": list(COUNTRIES)},
    ],
    "campaigns": [
        {"rule": "not_null", "column": "campaign_id"},
        {"rule": "unique", "column": "campaign_id"},
        {"rule": "in_list", "column": "channel", "values": list(CHANNELS)},
    ],
}
SCHEMAS = {"events": EVENTS_SCHEMA, "users": USERS_SCHEMA, "campaigns": CAMPAIGNS_SCHEMA}

ENRICHED_SQL = """
SELECT CAST(e.event_id AS BIGINT) AS event_id,
       CAST(e.user_id AS BIGINT) AS user_id,
       CAST(e.event_type AS VARCHAR) AS event_type,
       CAST(e.event_ts AS TIMESTAMP) AS event_ts,
       CAST(CAST(e.event_ts AS TIMESTAMP) AS DATE) AS event_date,
       round(CAST(e.revenue AS DOUBLE), 2) AS revenue,
       CAST(e.session_id AS VARCHAR) AS session_id,
       CAST(e.campaign_id AS VARCHAR) AS campaign_id,
       CAST(u.country AS VARCHAR) AS country,
       CAST(u.plan AS VARCHAR) AS plan,
       CAST(c.channel AS VARCHAR) AS channel
FROM events AS e
LEFT JOIN users AS u ON CAST(u.user_id AS BIGINT) = CAST(e.user_id AS BIGINT)
LEFT JOIN campaigns AS c ON CAST(c.campaign_id AS VARCHAR) = CAST(e.campaign_id AS VARCHAR)
"""

DAILY_SQL = f"""
SELECT user_id,
       event_date AS date,
       country,
       plan,
       count(*) AS events,
       count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
       count(*) FILTER (WHERE event_type = 'click') AS clicks,
       count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
       coalesce(round(sum(revenue), 2), 0) AS revenue,
       count(DISTINCT session_id) AS sessions,
       count(*) > {ANOMALY_EVENTS} AS is_anomaly
FROM enriched
GROUP BY user_id, event_date, country, plan
"""


@dataclass(frozen=True)
class Target:
    """A warehouse table every contender must produce identically."""

    name: str
    table: str
    key: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)  # column -> int, float, str, ts, date, bool

    def transformations(self) -> list[dict[str, Any]]:
        """The pipeline's SQL steps: enrich, then (for the daily table) aggregate."""
        steps = [{"name": "enriched", "type": "sql", "sql": ENRICHED_SQL}]
        if self.name == "daily":
            steps.append({"name": "daily", "type": "sql", "sql": DAILY_SQL})
        return steps

    def sql(self) -> str:
        """The whole target as one query over tables ``events``, ``users`` and ``campaigns``."""
        if self.name == "fact":
            return ENRICHED_SQL
        return f"WITH enriched AS ({ENRICHED_SQL})\n{DAILY_SQL}"


FACT = Target(
    "fact",
    "fact_events",
    ("event_id",),
    {
        "event_id": "int",
        "user_id": "int",
        "event_type": "str",
        "event_ts": "ts",
        "event_date": "date",
        "revenue": "float",
        "session_id": "str",
        "campaign_id": "str",
        "country": "str",
        "plan": "str",
        "channel": "str",
    },
)
DAILY = Target(
    "daily",
    "user_engagement_daily",
    ("user_id", "date"),
    {
        "user_id": "int",
        "date": "date",
        "country": "str",
        "plan": "str",
        "events": "int",
        "page_views": "int",
        "clicks": "int",
        "purchases": "int",
        "revenue": "float",
        "sessions": "int",
        "is_anomaly": "bool",
    },
)
TARGETS = {"fact": FACT, "daily": DAILY}
