"""dlt, the Python data-load library, as a contender for the fact target (``--sections strategies``).

What a dlt user writes for this job: one DuckDB query from the CSV files to the result (the same
read as the limit's, so dlt gets the join for free and validates nothing), streamed as Arrow
record batches into a dlt resource — dlt's fastest documented way for tabular data ("Arrow
tables ... skip the normalizer's row-by-row work"). dlt writes them as Parquet load files and
loads those: into PostgreSQL through ADBC (binary COPY, ``adbc-driver-postgresql``) or as CSV
``COPY`` (``DLT_PG_FORMAT``), into SQLite through its SQLAlchemy destination.

Strategies map to dlt's write dispositions: ``insert`` -> ``append``, ``upsert`` -> ``merge``
(its default ``delete-insert`` merge by ``primary_key``; SQLAlchemy destinations have no other),
``replace`` -> ``replace`` (``truncate-and-insert``, dlt's default and fastest).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.baselines import LIMIT_BATCH_ROWS, read_target
from benchmarks.runner import Stopwatch
from benchmarks.warehouse import kind_of
from benchmarks.workload import Target, Workload

DISPOSITIONS = {"insert": "append", "upsert": "merge", "replace": "replace"}
PG_FORMAT_ENV = "DLT_PG_FORMAT"  # parquet (ADBC, the default here) or csv
SETTINGS = {
    # dlt reports anonymous usage to its telemetry server by default: not from a benchmark
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    # with Airflow installed, dlt imports it and looks for secrets in an Airflow Variable on every
    # run (the first run in a process took 18 s here): the benchmark has no secrets to find
    "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
}


def configure() -> None:
    """dlt's settings for a measurement, before dlt is imported."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)


def run_dlt(workload: Workload, url: str, target: Target, strategy: str, scratch: Path) -> dict[str, Any]:
    """Load ``target`` with dlt under ``strategy``; returns the timing (dlt's extract, normalize and load)."""
    clock = Stopwatch()
    with clock("dlt"):
        rows = _pipeline(url, scratch).run(_resource(workload, target, strategy), loader_file_format=_file_format(url))
    info = rows.asdict() if hasattr(rows, "asdict") else {}
    failed = [job for package in info.get("load_packages", []) for job in package.get("jobs", [])
              if job.get("state") == "failed_jobs"]  # fmt: skip
    if failed:
        raise RuntimeError(f"dlt load jobs failed: {failed[:2]}")
    return clock.summary() | {"rows": None, "file_format": _file_format(url)}


def _file_format(url: str) -> str:
    return os.environ.get(PG_FORMAT_ENV, "parquet") if kind_of(url) == "postgres" else "parquet"


def _pipeline(url: str, scratch: Path) -> Any:
    import dlt

    if kind_of(url) == "postgres":
        # dlt requires a password; the benchmark's server trusts loopback connections and ignores it
        credentials = url.replace("postgresql+psycopg2://postgres@", "postgresql://postgres:unused@")
        destination = dlt.destinations.postgres(credentials=credentials)
        dataset = "public"
    else:
        destination = dlt.destinations.sqlalchemy(credentials=url)
        dataset = "main"  # the database file itself (another name is ATTACHed as a second file)
    return dlt.pipeline(
        pipeline_name="bench_fact",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(scratch / "dlt_pipelines"),
    )


def _resource(workload: Workload, target: Target, strategy: str) -> Any:
    import dlt

    def batches() -> Iterator[Any]:
        yield from read_target(workload, target, LIMIT_BATCH_ROWS)

    return dlt.resource(
        batches(),
        name=target.table,
        write_disposition=DISPOSITIONS[strategy],
        primary_key=list(target.key),
    )
