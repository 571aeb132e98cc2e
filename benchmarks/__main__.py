"""``python -m benchmarks --quick | --full``: every measurement in one run; see benchmarks/README.md.

Prints a line per measurement as it goes, then the Markdown report; writes the results to
``benchmarks/results/latest.json`` and the report to ``var/bench/latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import report, workload
from benchmarks.runner import child_main, spawn
from benchmarks.workload import REPO, bench_dir

SECTIONS = ("e2e", "xcom", "strategies", "parse", "parallel", "agents", "dagrun", "coldstart")
STRATEGIES = ("insert", "upsert", "replace")
WAYS = ("pipeline", "naive", "limit")
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "sizes": "100k,1m",
        "strategy_sizes": "1m",
        "samples": 5,
        "failing": (10, 1_000, 100_000, 1_000_000),
        "sections": SECTIONS,
    },
    "full": {
        "sizes": "100k,1m,10m",
        "strategy_sizes": "1m,10m",
        "samples": 11,
        "failing": (10, 1_000, 100_000, 1_000_000),
        "sections": SECTIONS,
    },
}


def scratch() -> Path:
    return bench_dir() / "run"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="100k and 1M rows (default)")
    mode.add_argument("--full", action="store_const", dest="mode", const="full", help="adds 10M rows")
    parser.add_argument("--sizes", help="comma-separated sizes: " + ", ".join(workload.SIZES))
    parser.add_argument("--warehouses", default="sqlite,postgres")
    parser.add_argument("--targets", default="fact,daily")
    parser.add_argument("--ways", default=",".join(WAYS), help="pipeline, naive, limit, naive_multi")
    parser.add_argument("--with-multi", action="store_true", help="also measure to_sql(method='multi')")
    parser.add_argument("--sections", help=", ".join(SECTIONS))
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="strategies section: " + ", ".join(STRATEGIES)
    )
    parser.add_argument("--strategy-sizes", help="strategies section (ours vs dlt, fact target): sizes")
    parser.add_argument("--samples", type=int, help="parse-cost samples (fresh interpreters) per target")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    parser.add_argument("--markdown", type=Path, help="default: var/bench/latest.md")
    parser.add_argument("--failing-rows", help="agent economy: failing-row counts, comma-separated")
    parser.add_argument("--render", type=Path, help="only re-render the report of a results JSON (no measuring)")
    args = parser.parse_args(argv)
    args.mode = args.mode or "quick"
    defaults = MODES[args.mode]
    args.sizes = (args.sizes or defaults["sizes"]).split(",")
    args.samples = args.samples or defaults["samples"]
    args.failing = [int(n) for n in args.failing_rows.split(",")] if args.failing_rows else defaults["failing"]
    args.markdown = args.markdown or bench_dir() / "latest.md"
    args.warehouses, args.targets = args.warehouses.split(","), args.targets.split(",")
    args.ways = args.ways.split(",") + (["naive_multi"] if args.with_multi else [])
    args.sections = args.sections.split(",") if args.sections else list(defaults["sections"])
    args.strategies = args.strategies.split(",")
    args.strategy_sizes = (args.strategy_sizes or defaults["strategy_sizes"]).split(",")
    for size in args.sizes:
        workload.size_rows(size)
    return args


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def warehouses(names: list[str]) -> Iterator[dict[str, str]]:
    """``{"sqlite": folder marker, "postgres": url}``; the PostgreSQL database lives for the run."""
    from benchmarks.warehouse import postgres_database

    with contextlib.ExitStack() as stack:
        urls = {"sqlite": "sqlite"} if "sqlite" in names else {}
        if "postgres" in names:
            urls["postgres"] = stack.enter_context(postgres_database())
        yield urls


def _url(urls: dict[str, str], warehouse: str, label: str) -> str:
    from benchmarks.warehouse import sqlite_url

    return sqlite_url(scratch() / "sqlite", label) if warehouse == "sqlite" else urls[warehouse]


def measure_cell(
    urls: dict[str, str], size: str, warehouse: str, target: str, way: str, *, strategy: str | None = None
) -> dict[str, Any]:
    label = f"{size}-{warehouse}-{target}-{way}" + (f"-{strategy}" if strategy else "")
    spec = {"way": way, "size": size, "url": _url(urls, warehouse, label), "target": target,
            "scratch": str(scratch() / label)}  # fmt: skip
    if strategy:  # upsert and replace are reruns: the table already holds the same rows
        spec |= {"strategy": strategy, "rerun": strategy != "insert"}
    cell = spawn(spec) | {"size": size, "warehouse": warehouse, "target": target, "way": way}
    if strategy:
        cell["strategy"] = strategy
    if warehouse == "sqlite":
        database = Path(spec["url"].removeprefix("sqlite:///"))
        for path in database.parent.glob(f"{database.name}*"):  # journals, dlt's attached staging files
            path.unlink(missing_ok=True)
    shown = f"{cell['seconds']:.2f} s, peak {cell['peak_rss_kib'] / 1024:.0f} MiB" if "seconds" in cell else "ERROR"
    check = cell.get("checksum", {})
    say(f"  {size:>5} {warehouse:<8} {target:<5} {way:<11} {strategy or '':<7} {shown}  rows={check.get('rows')} "
        f"sha256={str(check.get('sha256'))[:12]}  load={cell['load_avg_1m']:.1f}"
        + (f"  {cell['error'][:400]}" if "error" in cell else ""))  # fmt: skip
    return cell


def too_big(cells: list[dict[str, Any]], size: str, target: str, way: str) -> str | None:
    """Why a pandas run would not fit in memory, estimated from the same way at a smaller size (None: it fits)."""
    if not way.startswith("naive"):
        return None
    smaller = [c for c in cells if c["way"] == way and c["target"] == target and "peak_rss_kib" in c]
    if not smaller:
        return None
    last = max(smaller, key=lambda c: workload.SIZES[c["size"]])
    need_gib = last["peak_rss_kib"] / 1024**2 * workload.SIZES[size] / workload.SIZES[last["size"]]
    available_gib = _mem_available_gib()
    if need_gib < 0.6 * available_gib:
        return None
    return f"skipped: needs about {need_gib:.1f} GiB (from {last['size']}), {available_gib:.1f} GiB available"


def _mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def run_e2e(args: argparse.Namespace, results: dict[str, Any]) -> None:
    cells: list[dict[str, Any]] = []
    with warehouses(args.warehouses) as urls:
        for size in args.sizes:
            for warehouse in args.warehouses:
                for target in args.targets:
                    for way in args.ways:
                        skip = too_big(cells, size, target, way)
                        if skip:
                            say(f"  {size:>5} {warehouse:<8} {target:<5} {way:<11} {skip}")
                            cells.append({"size": size, "warehouse": warehouse, "target": target, "way": way,
                                          "error": skip})  # fmt: skip
                            continue
                        cells.append(measure_cell(urls, size, warehouse, target, way))
        if "xcom" in args.sections and "pipeline" in args.ways:
            say("XCom at 1k rows (pipeline only)")
            warehouse = args.warehouses[0]
            results["xcom_cells"] = [measure_cell(urls, "1k", warehouse, t, "pipeline") for t in args.targets]
    results["cells"] = cells
    results["comparisons"] = report.comparisons(cells)
    results["memory"] = report.memory(cells, args.sizes)


def run_strategies(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Ours and dlt on the fact target, per strategy: fresh processes, the same table checked."""
    cells: list[dict[str, Any]] = []
    with warehouses(args.warehouses) as urls:
        for size in args.strategy_sizes:
            for warehouse in args.warehouses:
                for strategy in args.strategies:
                    for way in ("pipeline", "dlt"):
                        cells.append(measure_cell(urls, size, warehouse, "fact", way, strategy=strategy))
    results["strategy_cells"] = cells
    results["strategies"] = report.strategies(cells, results.get("cells", []))


def xcom_sizes(results: dict[str, Any], sizes: list[str]) -> None:
    def largest(cells: list[dict[str, Any]], size: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for cell in cells:
            if cell["size"] == size and cell["way"] == "pipeline":
                for stage, size_bytes in cell.get("xcom_bytes", {}).items():
                    found[stage] = max(found.get(stage, 0), size_bytes)
        return found

    big = sizes[-1]
    results["xcom"] = report.xcom(largest(results.get("xcom_cells", []), "1k"), largest(results["cells"], big), big)


def rerender(path: Path, markdown: Path) -> int:
    """Recompute the summaries of a saved run from its cells and print and write its report."""
    import json

    results = json.loads(path.read_text())
    sizes = [s for s in workload.SIZES if any(c["size"] == s for c in results.get("cells", []))]
    if results.get("strategy_cells"):
        results["strategies"] = report.strategies(results["strategy_cells"], results.get("cells", []))
    if results.get("cells"):
        results["comparisons"] = report.comparisons(results["cells"])
        results["memory"] = report.memory(results["cells"], sizes)
        if results.get("xcom_cells"):
            xcom_sizes(results, sizes)
    report.write(results, path, markdown)
    say(report.render(results))
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        return rerender(args.render, args.markdown)
    os.chdir(REPO)
    results: dict[str, Any] = {"mode": args.mode, "machine": report.machine(), "load_avg_start": _load()}
    started = time.perf_counter()
    say(f"benchmarks ({args.mode}): sizes {args.sizes}, warehouses {args.warehouses}, sections {args.sections}")
    if {"e2e", "xcom", "strategies"} & set(args.sections):
        results["workloads"] = _workloads(args.sizes + (["1k"] if "xcom" in args.sections else []))
    if "e2e" in args.sections:
        say("End to end (fresh process per measurement):")
        run_e2e(args, results)
        if "xcom" in args.sections:
            xcom_sizes(results, args.sizes)
    if "strategies" in args.sections:
        say("Ours vs dlt, fact target, per strategy (upsert and replace are reruns; fresh process each):")
        _workloads(args.strategy_sizes)
        run_strategies(args, results)
    _probes(args, results)
    results["load_avg_end"] = _load()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.write(results, args.out, args.markdown)
    say("\n" + report.render(results))
    say(f"Results: {args.out}; report: {args.markdown}; {results['elapsed_s']} s in all")
    return 0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _workloads(sizes: list[str]) -> dict[str, Any]:
    out = {}
    for size in dict.fromkeys(sizes):
        started = time.perf_counter()
        work = workload.ensure(size)
        took = time.perf_counter() - started
        out[size] = {"events": work.events, "users": work.users, "bytes": work.bytes, "generated_s": work.generated_s,
                     "cached": took < work.generated_s / 2, "folder": str(work.folder)}  # fmt: skip
        say(f"workload {size}: {work.events:,} events, {work.users:,} users, {work.bytes / 1e6:.0f} MB CSV "
            f"(generated in {work.generated_s:.1f} s{', cached' if out[size]['cached'] else ''})")  # fmt: skip
    return out


def _probes(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from benchmarks import probes

    if "parallel" in args.sections:
        say("Parallel extraction ...")
        results["parallel"] = spawn({"probe": "parallel", "scratch": str(scratch() / "parallel")}, timeout=300)
    if "parse" in args.sections:
        say(f"Parse cost ({args.samples} fresh interpreters per target) ...")
        results["parse"] = probes.parse_cost(args.samples)
        results["dag_parse"] = probes.dag_parse(args.samples)
    if "agents" in args.sections:
        say("Agent economy (FakeClaude) ...")
        spec = {"probe": "agents", "scratch": str(scratch() / "agents"), "failing_sizes": list(args.failing)}
        results["agents"] = spawn(spec, timeout=900)
    if "dagrun" in args.sections:
        say("Reference DAG runs with FakeClaude (airflow dags test, a healthy and a failing day) ...")
        results["dagrun"] = spawn({"probe": "dagrun", "scratch": str(scratch() / "dagrun")}, timeout=1800)
    if "coldstart" in args.sections:
        from benchmarks import coldstart

        say("Cold start: the daily pipeline by `airflow dags test` vs a trivial 4-task DAG vs naive pandas ...")
        try:
            results["coldstart"] = coldstart.measure()
        except Exception as err:  # reported in its section, the other sections' figures are kept
            results["coldstart"] = {"error": f"{type(err).__name__}: {err}"}
        say("\n".join(coldstart.lines(results["coldstart"])))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
