"""Staged Parquet in S3: how DuckDB reads it, side by side (``python -m benchmarks.objectstore``).

Starts ``moto_server`` on loopback (stopped by pid at the end), stages 1M reference events as
Parquet part files in a bucket, then times two queries per way of reading, each in a cold state
(new filesystem object, no cache, no earlier download):

- ``describe``: count and an order-independent checksum over every column (what finishing a
  dataset and validation read);
- ``narrow``: revenue of purchases (two of seven columns: what a selective read can skip).

The ways (``--ways``):

- ``fsspec``: the connection's s3fs filesystem (from ``ObjectStoragePath``) registered with DuckDB
  (``con.register_filesystem``); DuckDB reads byte ranges through it;
- ``fsspec_small_blocks``: the same with 1 MiB read blocks instead of s3fs's 50 MiB default;
- ``arrow``: pyarrow's native ``S3FileSystem`` with the connection's keys and endpoint; a
  ``pyarrow.dataset`` over the parts handed to DuckDB as an Arrow dataset;
- ``download``: what the code did before: every part file copied to a local cache, then read.

Each way reports wall seconds per query and the ratio to ``download``.

``--section roundtrip``: the round trip's cost. Our pipeline (benchmarks/pipeline.py: extract the
three workload CSVs, validate, transform into ``user_engagement_daily``, upsert into SQLite) with
staging in a local folder and with staging in the loopback S3, each in a fresh interpreter, per
stage, plus opening the staging root and removing the run's staged data (retention).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.workload import REPO, bench_dir

ROWS = 1_000_000
PART_ROWS = 250_000
WAYS = ("fsspec", "fsspec_small_blocks", "fsspec_arrow", "arrow", "download")
QUERIES = {
    "describe": "SELECT count(*), sum(hash(event_id, user_id, event_type, event_ts, revenue, session_id, campaign_id)"
    "::HUGEINT) % 18446744073709551616 FROM {scan}",
    "narrow": "SELECT count(*), round(sum(revenue), 2) FROM {scan} WHERE event_type = 'purchase'",
}
CONN_ID = "bench_s3"


def stage_events(fs: Any, folder: str, rows: int) -> list[str]:
    """Write ``rows`` reference events as snappy Parquet parts of PART_ROWS rows; their S3 paths."""
    import numpy as np
    import pyarrow.parquet as pq

    from benchmarks.workload import SEED, events_chunk, users_for

    heavy = np.array([1, 2, 3])
    paths = []
    for index, first in enumerate(range(0, rows, PART_ROWS)):
        chunk = events_chunk(first, min(PART_ROWS, rows - first), users_for(rows), heavy, SEED + index)
        path = f"{folder}/part-{index:05d}.parquet"
        with fs.open(path, "wb") as handle:
            pq.write_table(chunk, handle, compression="snappy")
        paths.append(path)
    return paths


def _fresh_s3fs(block_size: int | None = None) -> Any:
    """A new s3fs instance from the connection (not Airflow's cached one), as ObjectStoragePath builds it."""
    from airflow.providers.amazon.aws.fs.s3 import get_fs

    fs = get_fs(CONN_ID)
    fs.invalidate_cache()
    if block_size:
        fs.default_block_size = block_size
    return fs


def read_fsspec(paths: list[str], query: str, block_size: int | None = None) -> Any:
    import duckdb

    con = duckdb.connect()
    try:
        con.register_filesystem(_fresh_s3fs(block_size))
        files = ", ".join(f"'s3://{p}'" for p in paths)
        return con.execute(query.format(scan=f"read_parquet([{files}], union_by_name = true)")).fetchall()
    finally:
        con.close()


def _arrow_s3(endpoint: str, keys: tuple[str, str]) -> Any:
    import pyarrow.fs as pafs

    scheme, host = endpoint.split("://", 1)
    return pafs.S3FileSystem(
        access_key=keys[0], secret_key=keys[1], endpoint_override=host, scheme=scheme, region="us-east-1"
    )


def read_arrow(paths: list[str], query: str, endpoint: str, keys: tuple[str, str]) -> Any:
    import duckdb
    import pyarrow.dataset as ds

    con = duckdb.connect()
    try:
        con.register("staged", ds.dataset(paths, filesystem=_arrow_s3(endpoint, keys), format="parquet"))
        return con.execute(query.format(scan="staged")).fetchall()
    finally:
        con.close()


def read_fsspec_arrow(paths: list[str], query: str, endpoint: str, keys: tuple[str, str]) -> Any:
    """pyarrow's native S3 client behind fsspec's ArrowFSWrapper, registered with DuckDB."""
    import duckdb
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3Wrapper(ArrowFSWrapper):
        protocol = "s3"  # type: ignore[assignment]  # the prefix DuckDB routes to this filesystem

    fs = S3Wrapper(_arrow_s3(endpoint, keys))
    con = duckdb.connect()
    try:
        con.register_filesystem(fs)
        files = ", ".join(f"'s3://{p}'" for p in paths)
        return con.execute(query.format(scan=f"read_parquet([{files}], union_by_name = true)")).fetchall()
    finally:
        con.close()


def read_download(paths: list[str], query: str, cache: Path) -> Any:
    import duckdb

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    fs = _fresh_s3fs()
    local = []
    for path in paths:
        target = cache / Path(path).name
        fs.get(path, str(target))
        local.append(str(target))
    con = duckdb.connect()
    try:
        files = ", ".join(f"'{p}'" for p in local)
        return con.execute(query.format(scan=f"read_parquet([{files}], union_by_name = true)")).fetchall()
    finally:
        con.close()


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def measure_reads(server: Any, rows: int, ways: list[str]) -> dict[str, Any]:
    """Stage ``rows`` events in a new bucket and time each way on each query."""
    keys = (server.stager.access_key, server.stager.secret_key)
    bucket = server.new_bucket()
    paths = stage_events(_fresh_s3fs(), f"{bucket}/staged/events", rows)
    size = sum(server.client().head_object(Bucket=bucket, Key=p.split("/", 1)[1])["ContentLength"] for p in paths)
    cache = Path(tempfile.mkdtemp(prefix="aap-bench-s3-"))
    readers: dict[str, Callable[[str], Any]] = {
        "fsspec": lambda q: read_fsspec(paths, q),
        "fsspec_small_blocks": lambda q: read_fsspec(paths, q, block_size=1 << 20),
        "fsspec_arrow": lambda q: read_fsspec_arrow(paths, q, server.endpoint, keys),
        "arrow": lambda q: read_arrow(paths, q, server.endpoint, keys),
        "download": lambda q: read_download(paths, q, cache),
    }
    results: dict[str, Any] = {"rows": rows, "parts": len(paths), "staged_bytes": size, "ways": {}}
    try:
        for way in ways:
            for name, query in QUERIES.items():
                seconds, value = timed(lambda q=query, w=way: readers[w](q))  # type: ignore[misc]
                results["ways"].setdefault(way, {})[name] = {"seconds": round(seconds, 3), "value": str(value)}
                print(f"{way:>20} {name:>8}: {seconds:7.3f} s  {value}", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return results


def markdown_reads(results: dict[str, Any]) -> str:
    base = results["ways"].get("download")
    lines = [
        f"{results['rows']:,} events in {results['parts']} Parquet parts, {results['staged_bytes'] / 2**20:.1f} MiB"
        " in the loopback S3 (moto):",
        "",
        "| way | describe s | narrow s | describe vs download | narrow vs download |",
        "|---|---:|---:|---:|---:|",
    ]
    for way, cells in results["ways"].items():
        ratios = [f"{cells[q]['seconds'] / base[q]['seconds']:.2f}x" if base else "-" for q in QUERIES]
        seconds = " | ".join(str(cells[q]["seconds"]) for q in QUERIES)
        lines.append(f"| {way} | {seconds} | {' | '.join(ratios)} |")
    return "\n".join(lines)


def roundtrip_child(where: str, rows: int, root: str) -> dict[str, Any]:
    """One pipeline run staged under ``root`` (local folder or S3), in this fresh interpreter."""
    import airflow.providers.amazon.aws.fs.s3  # noqa: F401  (imports before the clock: a task has Airflow loaded)
    import duckdb  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import s3fs  # noqa: F401
    import sqlalchemy as sa
    from airflow.sdk import ObjectStoragePath  # noqa: F401

    from airflow_agent_provider.engines.staging import retention as staging_retention
    from airflow_agent_provider.operators._staging import ensure_open
    from benchmarks.pipeline import run_pipeline
    from benchmarks.runner import peak_rss_kib
    from benchmarks.workload import DAILY, ensure

    size = {1_000_000: "1m", 100_000: "100k", 10_000_000: "10m", 1_000: "1k"}[rows]
    work = ensure(size)
    scratch = Path(tempfile.mkdtemp(prefix=f"aap-roundtrip-{where}-"))
    url = f"sqlite:///{scratch / 'warehouse.db'}"
    run_root = f"{root.rstrip('/')}/bench/run"
    try:
        opened, _ = timed(lambda: ensure_open(root))
        summary = run_pipeline(work, url, DAILY, run_root)
        removed, _ = timed(lambda: staging_retention.remove(run_root))
        engine = sa.create_engine(url)
        with engine.connect() as con:
            loaded = con.exec_driver_sql(f"SELECT count(*) FROM {DAILY.table}").scalar()
        engine.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stages = {"open root": round(opened, 3), **summary["stages"], "remove run (retention)": round(removed, 3)}
    return {"where": where, "stages": stages, "rows_loaded": loaded, "peak_rss_mib": peak_rss_kib() // 1024}


def measure_roundtrip(server: Any, rows: int, local_root: Path) -> dict[str, Any]:
    """Local staging, then S3 staging: each a fresh interpreter running :func:`roundtrip_child`."""
    bucket = server.new_bucket()
    results = {}
    for where, root in (("local", str(local_root)), ("s3", f"s3://{CONN_ID}@{bucket}/staging")):
        argv = [sys.executable, "-m", "benchmarks.objectstore", "--child", where, "--root", root, "--rows", str(rows)]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=os.environ, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{where} round trip failed:\n{done.stderr[-3000:]}")
        results[where] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{where:>6}: {results[where]['stages']} rows={results[where]['rows_loaded']}", flush=True)
    return results


def markdown_roundtrip(results: dict[str, Any]) -> str:
    local, s3 = results["local"]["stages"], results["s3"]["stages"]
    lines = ["| stage | local s | S3 (moto) s | S3 - local s | S3 / local |", "|---|---:|---:|---:|---:|"]
    for stage in local:
        ratio = f"{s3[stage] / local[stage]:.2f}x" if local[stage] >= 0.01 else "-"
        lines.append(f"| {stage} | {local[stage]:.2f} | {s3[stage]:.2f} | {s3[stage] - local[stage]:+.2f} | {ratio} |")
    total_local, total_s3 = sum(local.values()), sum(s3.values())
    lines.append(
        f"| **total** | {total_local:.2f} | {total_s3:.2f} | {total_s3 - total_local:+.2f} | "
        f"{total_s3 / total_local:.2f}x |"
    )
    rows = {where: results[where]["rows_loaded"] for where in ("local", "s3")}
    lines.append(f"\nrows loaded: {rows}; peak RSS MiB: { {w: results[w]['peak_rss_mib'] for w in results} }")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.objectstore", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--section", choices=("reads", "roundtrip"), default="reads")
    parser.add_argument("--child", choices=("local", "s3"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "objectstore.json")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(roundtrip_child(args.child, args.rows, args.root)))
        return 0
    home = bench_dir() / "objectstore-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    from tests.objectstore import MotoS3

    server = MotoS3.start(home)
    try:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(server.connection())
        if args.section == "reads":
            results = measure_reads(server, args.rows, args.ways.split(","))
            print(markdown_reads(results))
        else:
            local_root = Path(tempfile.mkdtemp(prefix="aap-roundtrip-staging-"))
            try:
                results = measure_roundtrip(server, args.rows, local_root)
            finally:
                shutil.rmtree(local_root, ignore_errors=True)
            print(markdown_roundtrip(results))
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({args.section: results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
