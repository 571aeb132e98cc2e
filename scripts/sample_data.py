"""Generate the reference DAG's sample sources: a SQLite events DB, a users JSON file, a campaigns CSV.

Deterministic: each day's events come from a generator seeded by the date, so a day's rows do not
depend on ``--start`` or ``--days`` (re-generating a window gives the same events for each date).
``--bad-day`` injects the issues the remediation demo needs (unknown event types, null user ids,
negative revenue) on that date only.

    python scripts/sample_data.py --out var/sample --start 2026-11-01 --days 14
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
EVENT_WEIGHTS = (0.55, 0.3, 0.1, 0.05)
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA")
PLANS = ("free", "pro", "team")
CHANNELS = ("email", "search", "social", "display")
SEED = 20261101
EventRow = tuple[int, int | None, str, str, float | None, str, str | None]


def users(count: int) -> list[dict[str, object]]:
    """The user profiles the HTTP API serves."""
    rng = random.Random(SEED)
    signup = date(2025, 1, 1)
    return [
        {
            "user_id": user_id,
            "name": f"User {user_id}",
            "email": f"user{user_id}@example.com",
            "country": rng.choice(COUNTRIES),
            "plan": rng.choices(PLANS, weights=(0.7, 0.25, 0.05))[0],
            "signup_date": (signup + timedelta(days=rng.randrange(600))).isoformat(),
        }
        for user_id in range(1, count + 1)
    ]


def campaigns(count: int) -> list[dict[str, object]]:
    """The marketing campaigns of the CSV file."""
    rng = random.Random(SEED + 1)
    first = date(2026, 10, 1)
    rows = []
    for index in range(1, count + 1):
        start = first + timedelta(days=rng.randrange(60))
        rows.append(
            {
                "campaign_id": f"C{index:03d}",
                "name": f"Campaign {index}",
                "channel": rng.choice(CHANNELS),
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=rng.randrange(7, 45))).isoformat(),
                "budget": round(rng.uniform(500, 20_000), 2),
            }
        )
    return rows


def day_events(day: date, per_day: int, n_users: int, n_campaigns: int, *, bad: bool) -> Iterator[EventRow]:
    """One day of events; a few heavy users make the anomaly flags fire; ``bad`` injects broken rows."""
    rng = random.Random(SEED + day.toordinal())
    heavy = set(rng.sample(range(1, n_users + 1), k=min(3, n_users)))
    base_id = int(day.strftime("%Y%m%d")) * 1_000_000
    midnight = datetime(day.year, day.month, day.day)
    for index in range(per_day):
        user_id = rng.choice(tuple(heavy)) if rng.random() < 0.08 else rng.randint(1, n_users)
        event_type = rng.choices(EVENT_TYPES, weights=EVENT_WEIGHTS)[0]
        revenue = round(rng.uniform(5, 250), 2) if event_type == "purchase" else None
        user: int | None = user_id
        if bad and index % 40 == 0:
            event_type = "purchase_v2"
        if bad and index % 50 == 1:
            user = None
        if bad and index % 60 == 2:
            revenue = -abs(revenue or 10.0)
        ts = midnight + timedelta(seconds=rng.randrange(86_400))
        session = f"s{user_id}-{day:%Y%m%d}-{rng.randrange(3)}"
        campaign = f"C{rng.randint(1, n_campaigns):03d}" if rng.random() < 0.3 else None
        yield (base_id + index, user, event_type, ts.strftime("%Y-%m-%d %H:%M:%S"), revenue, session, campaign)


def write_events(
    path: Path, days: list[date], per_day: int, *, n_users: int, n_campaigns: int, bad_day: date | None
) -> int:
    """(Re)write the events SQLite file; returns the number of rows."""
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute(
            "CREATE TABLE events (event_id INTEGER PRIMARY KEY, user_id INTEGER, event_type TEXT NOT NULL, "
            "event_ts TEXT NOT NULL, revenue REAL, session_id TEXT NOT NULL, campaign_id TEXT)"
        )
        con.execute("CREATE INDEX events_ts ON events (event_ts)")
        total = 0
        for day in days:
            rows = list(day_events(day, per_day, n_users, n_campaigns, bad=day == bad_day))
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            total += len(rows)
        con.commit()
        return total
    finally:
        con.close()


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate(out: Path, start: date, days: int, per_day: int, *, bad_day: date | None = None) -> dict[str, object]:
    """Write events.db, users.json and campaigns.csv under ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    n_users, n_campaigns = 500, 12
    dates = [start + timedelta(days=i) for i in range(days)]
    events = write_events(out / "events.db", dates, per_day, n_users=n_users, n_campaigns=n_campaigns, bad_day=bad_day)
    (out / "users.json").write_text(json.dumps(users(n_users), indent=1), encoding="utf-8")
    write_csv(out / "campaigns.csv", campaigns(n_campaigns))
    return {"out": str(out), "events": events, "users": n_users, "campaigns": n_campaigns, "days": days}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/sample"))
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--events-per-day", type=int, default=5000)
    parser.add_argument("--bad-day", type=date.fromisoformat, default=None, help="inject broken rows on this date")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.start, args.days, args.events_per_day, bad_day=args.bad_day)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
