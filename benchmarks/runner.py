"""Measure one contender in a fresh interpreter, so timings and peak RSS belong to that run alone.

The parent calls :func:`spawn` with a spec (way, size, warehouse URL, target); the child
(``python -m benchmarks child '<spec>'``) imports what the way needs *before* the clock starts
(Airflow start-up and library imports are not what is measured), drops the target table, runs the
way, reads its own high-water mark (``VmHWM`` of ``/proc/self/status``), then — outside the
timing and after the RSS reading — checksums the warehouse table, and prints one JSON line.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.workload import REPO

PRELOAD = {
    "pipeline": [
        "duckdb",
        "pyarrow.parquet",
        "pyarrow.dataset",
        "sqlalchemy",
        "psycopg2",
        "fsspec",
        "adbc_driver_sqlite.dbapi",
    ],
    "naive": ["pandas", "sqlalchemy", "psycopg2"],
    "naive_multi": ["pandas", "sqlalchemy", "psycopg2"],
    "limit": ["duckdb", "pyarrow.csv", "sqlalchemy", "psycopg2", "adbc_driver_sqlite.dbapi"],
    "dlt": [
        "dlt",
        "dlt.destinations",
        "duckdb",
        "pyarrow.parquet",
        "sqlalchemy",
        "psycopg2",
        "adbc_driver_postgresql.dbapi",
    ],
}
ENGINE_MODULES = ["extract", "validate", "transform", "load", "load_sqlite", "load_postgres"]


class Stopwatch:
    """Wall-clock and process CPU seconds per named stage (``with clock("load"): ...``).

    CPU time adds up every thread of this process (DuckDB's too), so on a loaded machine it shows the
    work done where wall time shows the waiting; it does not include a database server's own CPU.
    """

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_kib: dict[str, int] = {}
        self.overall_kib = 0

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.overall_kib = max(self.overall_kib, peak_rss_kib())
        reset = reset_peak_rss()
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages[stage] = round(self.stages.get(stage, 0.0) + time.perf_counter() - started, 4)
            self.cpu[stage] = round(self.cpu.get(stage, 0.0) + time.process_time() - cpu, 4)
            self.overall_kib = max(self.overall_kib, peak_rss_kib())
            if reset:
                self.peak_kib[stage] = max(self.peak_kib.get(stage, 0), peak_rss_kib())

    @property
    def total(self) -> float:
        return round(sum(self.stages.values()), 4)

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": self.total,
            "stages": self.stages,
            "cpu_seconds": round(sum(self.cpu.values()), 4),
            "cpu_stages": self.cpu,
            "peak_rss_kib": self.overall_kib,
            "peak_rss_kib_stages": self.peak_kib,
        }


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB: ``VmHWM``, the high-water mark of its own memory.

    Not ``getrusage().ru_maxrss``: Linux carries that over ``execve`` from the forked copy of the
    parent, so a child of a large parent would report the parent's size. :class:`Stopwatch` resets
    the mark per stage and keeps the overall maximum itself.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` (Linux ``clear_refs`` 5), so the next reading is one stage's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def spawn(spec: dict[str, Any], *, timeout: float = 3600) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; an error comes back as ``{"error": ...}``."""
    command = [sys.executable, "-m", "benchmarks", "child", json.dumps(spec)]
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "load_avg_1m": load}
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if proc.returncode != 0 or not result:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        result.setdefault("error", f"exit {proc.returncode}: " + " | ".join(tail))
    result["load_avg_1m"] = load
    return result


def child_main(spec_text: str) -> int:
    """The child side of :func:`spawn`: measure, print one JSON line, exit 0 (or 1 with an error)."""
    spec = json.loads(spec_text)
    scratch = Path(spec["scratch"])
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed measurement left (dlt would retry its pending load)
    try:
        result = _measure(spec, scratch)
        code = 0
    except Exception as err:
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
        code = 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, default=str))
    return code


def _measure(spec: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from benchmarks import dagrun, economy, probes, warehouse, workload

    if spec.get("probe") == "parallel":
        return probes.parallel_extraction(scratch)
    if spec.get("probe") == "agents":
        return economy.measure(scratch, tuple(spec["failing_sizes"]))
    if spec.get("probe") == "dagrun":
        return dagrun.measure()

    _preload(spec["way"])
    work, target, url = workload.ensure(spec["size"]), workload.TARGETS[spec["target"]], spec["url"]
    warehouse.drop_table(url, target.table)
    if spec["way"] == "dlt":
        warehouse.drop_dlt(url, "public")
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["AGENT_PROVIDER_STAGING_ROOT"] = str(scratch / "staging")
    strategy = spec.get("strategy", "upsert")
    if spec.get("rerun"):  # the table already holds these rows, written the same way: not timed
        _run_way(spec["way"], work, url, target, scratch / "first", strategy=strategy)
    import_rss = current_rss_kib()
    reset_peak_rss()
    result = _run_way(spec["way"], work, url, target, scratch / "timed", strategy=strategy)
    result |= {"peak_rss_kib": max(result.get("peak_rss_kib", 0), peak_rss_kib()), "import_rss_kib": import_rss}
    if spec.get("checksum", True):
        result["checksum"] = warehouse.table_checksum(url, target)
    return result


def _preload(way: str) -> None:
    """Import what the way needs before the clock starts (dlt: configured before it is imported)."""
    if way == "dlt":
        from benchmarks import contender_dlt

        contender_dlt.configure()
    for module in PRELOAD[way]:
        importlib.import_module(module)
    if way == "pipeline":
        for module in ENGINE_MODULES:
            importlib.import_module(f"airflow_agent_provider.engines.{module}")


def _run_way(way: str, work: Any, url: str, target: Any, scratch: Path, *, strategy: str) -> dict[str, Any]:
    from benchmarks import baselines, contender_dlt, pipeline

    if way == "pipeline":
        return pipeline.run_pipeline(work, url, target, str(scratch / "staging"), strategy=strategy)
    if way == "limit":
        return baselines.duckdb_limit(work, url, target)
    if way == "dlt":
        return contender_dlt.run_dlt(work, url, target, strategy, scratch.parent)  # both runs: one dlt pipeline
    return baselines.naive_pandas(work, url, target, method="multi" if way == "naive_multi" else None)
