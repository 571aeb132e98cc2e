"""The benchmark's report: machine facts, goals checked against the figures, Markdown tables, JSON.

The same Markdown is printed to the terminal and written to ``var/bench/latest.md`` (git-ignored,
like the JSON), so the README's results section is a copy of a real run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

GOALS = {
    "speedup_sqlite": 3.0,
    "speedup_postgres": 10.0,
    "limit_ratio": 1.3,
    "rss_mib": 1024,
    "xcom_bytes": 16 * 1024,
    "parse_ms": 50.0,
    "parallel_s": 1.5,
    "route_tokens": 3000,
    "failing_run_usd": 0.01,
    "backfill_calls": 1,
}
MiB = 1024


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import duckdb
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy as sa

    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "")
    mem = next((line.split()[1] for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "sqlalchemy": sa.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
        "git": _git("rev-parse", "--short", "HEAD") + (" (dirty tree)" if _git("status", "--porcelain") else ""),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


# ---------------------------------------------------------------- end to end


def comparisons(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, warehouse, target): times, ratios, goals, and whether the tables agree."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for cell in cells:
        grouped.setdefault((cell["size"], cell["warehouse"], cell["target"]), {})[cell["way"]] = cell
    return [_compare(key, ways) for key, ways in grouped.items()]


def _compare(key: tuple[str, str, str], ways: dict[str, Any]) -> dict[str, Any]:
    size, warehouse, target = key
    seconds = {way: cell.get("seconds") for way, cell in ways.items() if "error" not in cell}
    cpu = {way: cell.get("cpu_seconds") for way, cell in ways.items() if "error" not in cell}
    sums = {
        way: (cell["checksum"]["rows"], cell["checksum"]["sha256"]) for way, cell in ways.items() if "checksum" in cell
    }
    ours, naive, limit = seconds.get("pipeline"), seconds.get("naive"), seconds.get("limit")
    speedup = round(naive / ours, 2) if ours and naive else None
    ratio = round(ours / limit, 2) if ours and limit else None
    goal = GOALS["speedup_postgres" if warehouse == "postgres" else "speedup_sqlite"]
    same = len(sums) >= 2 and len(set(sums.values())) == 1
    rows, sha = next(iter(sums.values()), (None, ""))
    return {
        "size": size,
        "warehouse": warehouse,
        "target": target,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_speedup_vs_naive": _ratio(cpu.get("naive"), cpu.get("pipeline")),
        "cpu_ratio_to_limit": _ratio(cpu.get("pipeline"), cpu.get("limit")),
        "speedup_vs_naive": speedup,
        "speedup_goal": goal,
        "speedup_goal_met": None if speedup is None else speedup >= goal,
        "ratio_to_limit": ratio,
        "limit_goal_met": None if ratio is None else ratio <= GOALS["limit_ratio"],
        "same_table": same,
        "rows": rows,
        "sha256": sha,
        "checksums": {way: {"rows": r, "sha256": s} for way, (r, s) in sums.items()},
        "errors": {way: cell["error"] for way, cell in ways.items() if "error" in cell},
        "pipeline_stages": ways.get("pipeline", {}).get("stages", {}),
        "pipeline_cpu_stages": ways.get("pipeline", {}).get("cpu_stages", {}),
        "load_avg_1m": {way: round(cell.get("load_avg_1m", 0.0), 2) for way, cell in ways.items()},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _fmt(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:.2f}{unit}"


def e2e_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| size | warehouse | target | ours s | naive s | limit s | ours vs naive (goal) | ours / limit (≤1.3) "
        "| same table (rows, sha256) |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        s = r["seconds"]
        sha = f"{'yes' if r['same_table'] else 'NO'} ({r['rows']}, {r['sha256'][:12]})"
        out.append(
            f"| {r['size']} | {r['warehouse']} | {r['target']} | {_fmt(s.get('pipeline'))} | {_fmt(s.get('naive'))} "
            f"| {_fmt(s.get('limit'))} | {_fmt(r['speedup_vs_naive'], 'x')} (≥{r['speedup_goal']:.0f}x: "
            f"{verdict(r['speedup_goal_met'])}) | {_fmt(r['ratio_to_limit'], 'x')} ({verdict(r['limit_goal_met'])}) "
            f"| {sha} |"
        )
    out += [
        f"- error in {r['size']}/{r['warehouse']}/{r['target']} {way}: {err[:300]}"
        for r in rows
        for way, err in r["errors"].items()
    ]
    return out


def cpu_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| size | warehouse | target | ours cpu s | naive cpu s | limit cpu s | ours vs naive | ours / limit |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["cpu_seconds"]
        times = " | ".join(_fmt(c.get(way)) for way in ("pipeline", "naive", "limit"))
        ratios = f"{_fmt(r['cpu_speedup_vs_naive'], 'x')} | {_fmt(r['cpu_ratio_to_limit'], 'x')}"
        out.append(f"| {r['size']} | {r['warehouse']} | {r['target']} | {times} | {ratios} |")
    return out


def stages_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| size | warehouse | target | extract | validate | transform | load |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        st, cpu = r["pipeline_stages"], r.get("pipeline_cpu_stages", {})
        if st:
            cols = " | ".join(
                f"{_fmt(st.get(k))} ({_fmt(cpu.get(k))})" for k in ("extract", "validate", "transform", "load")
            )
            out.append(f"| {r['size']} | {r['warehouse']} | {r['target']} | {cols} |")
    return out


# ---------------------------------------------------------------- ours vs dlt, per strategy


def strategies(cells: list[dict[str, Any]], e2e_cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (size, warehouse, strategy): ours and dlt, the ratio, and whether the tables agree.

    Naive pandas appends (``to_sql``): its fact figure from the end-to-end section stands beside ``insert``.
    """
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for cell in cells:
        grouped.setdefault((cell["size"], cell["warehouse"], cell["strategy"]), {})[cell["way"]] = cell
    naive = {(c["size"], c["warehouse"]): c.get("seconds") for c in e2e_cells
             if c["way"] == "naive" and c["target"] == "fact" and "error" not in c}  # fmt: skip
    rows = []
    for (size, warehouse, strategy), ways in grouped.items():
        ok = {way: cell for way, cell in ways.items() if "error" not in cell}
        seconds = {way: cell.get("seconds") for way, cell in ok.items()}
        sums = {way: (cell["checksum"]["rows"], cell["checksum"]["sha256"]) for way, cell in ok.items()
                if "checksum" in cell}  # fmt: skip
        ahead = _ratio(seconds.get("dlt"), seconds.get("pipeline"))
        rows.append({
            "size": size, "warehouse": warehouse, "strategy": strategy, "seconds": seconds,
            "cpu_seconds": {way: cell.get("cpu_seconds") for way, cell in ok.items()},
            "peak_rss_mib": {way: round(cell["peak_rss_kib"] / MiB, 1) for way, cell in ok.items()
                             if "peak_rss_kib" in cell},
            "naive_insert_seconds": naive.get((size, warehouse)) if strategy == "insert" else None,
            "dlt_over_ours": ahead, "goal_met": None if ahead is None else ahead > 1.0,
            "same_table": len(set(sums.values())) == 1 if len(sums) == 2 else None,  # None: one contender only
            "rows": next(iter(sums.values()), (None, ""))[0],
            "sha256": next(iter(sums.values()), (None, ""))[1],
            "pipeline_stages": ok.get("pipeline", {}).get("stages", {}),
            "errors": {way: cell["error"] for way, cell in ways.items() if "error" in cell},
            "load_avg_1m": {way: round(cell.get("load_avg_1m", 0.0), 2) for way, cell in ways.items()},
        })  # fmt: skip
    return rows


def strategies_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["- not run (`--sections strategies`)"]
    out = [
        "| size | warehouse | strategy | ours s (cpu) | dlt s (cpu) | naive s | dlt / ours (goal > 1) "
        "| peak MiB ours / dlt | same table (rows, sha256) |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        s, c, m = r["seconds"], r["cpu_seconds"], r["peak_rss_mib"]
        same = {True: "yes", False: "NO", None: "n/a"}[r["same_table"]]
        sha = f"{same} ({r['rows']}, {r['sha256'][:12]})"
        out.append(
            f"| {r['size']} | {r['warehouse']} | {r['strategy']} "
            f"| {_fmt(s.get('pipeline'))} ({_fmt(c.get('pipeline'))}) | {_fmt(s.get('dlt'))} ({_fmt(c.get('dlt'))}) "
            f"| {_fmt(r['naive_insert_seconds'])} "
            f"| {_fmt(r['dlt_over_ours'], 'x')} ({verdict(r['goal_met'])}) "
            f"| {_fmt(m.get('pipeline'))} / {_fmt(m.get('dlt'))} | {sha} |"
        )
    out += [
        f"- error in {r['size']}/{r['warehouse']}/{r['strategy']} {way}: {err[:300]}"
        for r in rows
        for way, err in r["errors"].items()
    ]
    return out


# ---------------------------------------------------------------- memory and XCom


def memory(cells: list[dict[str, Any]], sizes: Iterable[str]) -> dict[str, Any]:
    """Peak RSS (MiB) per size and way: the largest over warehouses and targets."""
    table: dict[str, dict[str, float]] = {}
    for cell in cells:
        if "peak_rss_kib" in cell:
            row = table.setdefault(cell["size"], {})
            row[cell["way"]] = max(row.get(cell["way"], 0.0), round(cell["peak_rss_kib"] / MiB, 1))
    measured = [s for s in sizes if s in table]
    largest = measured[-1] if measured else None
    ours = table[largest].get("pipeline") if largest else None
    stages: dict[str, dict[str, float]] = {}
    for cell in cells:
        if cell["way"] == "pipeline" and cell.get("peak_rss_kib_stages"):
            row = stages.setdefault(cell["size"], {})
            for stage, kib in cell["peak_rss_kib_stages"].items():
                row[stage] = max(row.get(stage, 0.0), round(kib / MiB, 1))
    return {"peak_rss_mib": table, "largest": largest, "pipeline_largest_mib": ours, "pipeline_stage_peak_mib": stages,
            "goal_met": None if ours is None else ours < GOALS["rss_mib"]}  # fmt: skip


def memory_table(mem: dict[str, Any]) -> list[str]:
    order = ["pipeline", "naive", "naive_multi", "limit"]
    ways = [w for w in order if any(w in row for row in mem["peak_rss_mib"].values())]
    out = ["| size | " + " | ".join(f"{w} MiB" for w in ways) + " |", "|---|" + "---:|" * len(ways)]
    for size, row in mem["peak_rss_mib"].items():
        out.append(f"| {size} | " + " | ".join(_fmt(row.get(w)) for w in ways) + " |")
    for size, row in mem.get("pipeline_stage_peak_mib", {}).items():
        peaks = ", ".join(f"{stage} {mib:.0f}" for stage, mib in row.items())
        out.append(f"- ours at {size}, peak MiB per stage (the mark reset at each stage start): {peaks}")
    out.append(f"- goal: ours under 1 GiB at {mem['largest']}: {verdict(mem['goal_met'])}")
    return out


def xcom(small: dict[str, int] | None, large: dict[str, int] | None, large_size: str | None) -> dict[str, Any]:
    if not small or not large:
        return {"small": small, "large": large, "goal_met": None}
    worst = max(large.values())
    same_order = all(large[k] < 10 * small.get(k, 1) for k in large)
    return {"small": small, "large": large, "large_size": large_size, "max_bytes": worst,
            "goal_met": worst < GOALS["xcom_bytes"] and same_order}  # fmt: skip


def xcom_table(x: dict[str, Any]) -> list[str]:
    if not x.get("small") or not x.get("large"):
        return ["- not measured"]
    out = [f"| stage result | 1k rows | {x['large_size']} rows |", "|---|---:|---:|"]
    out += [f"| {stage} | {x['small'].get(stage, '–')} | {x['large'][stage]} |" for stage in x["large"]]
    out.append(f"- goal: same order and < 16 KiB: {verdict(x['goal_met'])} (largest {x['max_bytes']} bytes)")
    return out


# ---------------------------------------------------------------- parse, parallel, agents


def parse_table(parse: dict[str, Any], dag: dict[str, Any]) -> list[str]:
    out = ["| what (fresh interpreter, after `import airflow.sdk`) | adds ms (median) | min ms |", "|---|---:|---:|"]
    for label, row in parse.items():
        if "added_ms" in row:
            out.append(f"| {label} | {row['added_ms']} | {row['added_ms_min']} |")
        else:
            out.append(f"| {label} | {row.get('status') or row.get('error')} | |")
    sdk = next((r["airflow_sdk_ms"] for r in parse.values() if "airflow_sdk_ms" in r), None)
    out.append(f"- `import airflow.sdk` itself: {sdk} ms (median)")
    for label, row in parse.items():
        if label.startswith("airflow_agent_provider") and "added_ms" in row:
            ok = row["added_ms"] < GOALS["parse_ms"]
            out.append(f"- goal < {GOALS['parse_ms']:.0f} ms for {label.split(': ', 1)[1]}: {verdict(ok)}")
    for name, row in dag.get("files", {}).items():
        out.append(
            f"- reference DAG `{name}` parse (DagBag file stat, median of {dag['samples']}): {row['parse_ms']} ms"
        )
    if dag.get("error") or dag.get("import_errors"):
        out.append(f"- DAG parse problem: {dag.get('error') or dag.get('import_errors')}")
    return out


def parallel_lines(p: dict[str, Any]) -> list[str]:
    if "error" in p:
        return [f"- error: {p['error']}"]
    ok = p["parallel_s"] <= GOALS["parallel_s"]
    return [
        f"- {p['sources']} HTTP sources, endpoint sleeps {p['endpoint_sleep_s']} s: sequential-equivalent "
        f"{p['sequential_equivalent_s']} s, measured with max_workers={p['sources']}: {p['parallel_s']} s "
        f"(first call in a fresh process, imports included: {p['first_call_s']} s), with max_workers=1: "
        f"{p['one_worker_s']} s — goal ≤ {GOALS['parallel_s']} s: {verdict(ok)}"
    ]


def agents_lines(a: dict[str, Any]) -> list[str]:
    if a.get("status") != "measured":
        return [f"- agent economy: {a.get('status') or a.get('error')} (NOT a pass)"]
    out = [
        "| failing rows | issues | input tokens (uncached + cache write + cache read) | cost USD |",
        "|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['failing_rows']:,} | {r['issues']} | {r['total_input_tokens']} ({r['input_tokens']} + "
        f"{r['cache_write_tokens']} + {r['cache_read_tokens']}) | {r['cost_usd']:.5f} |"
        for r in a["routing"]
    ]
    worst = max(r["total_input_tokens"] for r in a["routing"])
    runs = a["described_transformation"]["runs"]
    fail = a["failing_run"]["total"]
    out += [
        f"- routing input tokens bounded < {GOALS['route_tokens']}: "
        f"{verdict(worst < GOALS['route_tokens'])} (max {worst})",
        f"- model calls on a healthy run: {a['healthy_run']['model_calls']} — goal 0: "
        f"{verdict(a['healthy_run']['model_calls'] == 0)}",
        f"- described transformation: run 1 {runs[0]['total_input_tokens']} input tokens in {runs[0]['model_calls']} "
        f"call(s); run 2 {runs[1]['total_input_tokens']} tokens in {runs[1]['model_calls']} call(s) — goal 0: "
        f"{verdict(runs[1]['total_input_tokens'] == 0 and runs[1]['model_calls'] == 0)}",
        f"- failing run (diagnose + route, cold cache, list prices): ${fail['cost_usd']:.5f} in {fail['model_calls']} "
        f"calls — goal < ${GOALS['failing_run_usd']}: {verdict(fail['cost_usd'] < GOALS['failing_run_usd'])}",
    ]
    backfill = a.get("backfill_memory")
    if backfill:
        off, on = backfill["without_memory"], backfill["with_memory"]
        out.append(
            f"- {on['runs']}-day backfill, one recurring failure: {off['model_calls']} routing call(s), "
            f"${off['cost_usd']:.5f} without memory; {on['model_calls']} call(s), ${on['cost_usd']:.5f} with "
            f"`reuse_decisions` ({on['reused']} runs reused, routes {on['routes']}) — goal {GOALS['backfill_calls']} "
            f"call: {verdict(on['model_calls'] == GOALS['backfill_calls'] and on['routes'] == off['routes'])}"
        )
    return out


def dagrun_lines(d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return ["- reference DAG runs: not run (`--sections dagrun`, default in --full)"]
    if "error" in d:
        return [f"- reference DAG runs: error: {d['error'][:400]}"]
    out = []
    for label in ("healthy", "failing"):
        r, u = d[label], d[label]["usage"]
        tokens = u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
        out.append(
            f"- reference DAG, {label} run {r['run']} (`airflow dags test`, {r['airflow_dags_test_s']} s): status "
            f"{r['status']}, route {r['route']}, {r['requests_to_claude']} request(s) reached FakeClaude, "
            f"{u['model_calls']} model call(s), {tokens} input tokens, ${u['cost_usd']:.5f}"
        )
    healthy_ok = d["healthy"]["requests_to_claude"] == 0 and d["healthy"]["usage"]["model_calls"] == 0
    out.append(f"- goal 0 model calls on the healthy run: {verdict(healthy_ok)}; failing run under $0.01: "
               f"{verdict(d['failing']['usage']['cost_usd'] < GOALS['failing_run_usd'])}")  # fmt: skip
    return out


# ---------------------------------------------------------------- the whole report


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB; Python {m['python']}, DuckDB {m['duckdb']}, "
        f"pandas {m['pandas']}, pyarrow {m['pyarrow']}, SQLAlchemy {m['sqlalchemy']}, SQLite {m['sqlite']}; "
        f"git {m['git']}",
        f"Command: `{m['command']}`; load average (1, 5, 15 min) at start {results['load_avg_start']}, "
        f"at end {results['load_avg_end']}",
        "",
        "### 1. End to end (extract → validate → transform → load, seconds)",
        "",
        *e2e_table(results.get("comparisons", [])),
        "",
        "Process CPU seconds of the same runs (all threads of the measuring process; robust to a loaded "
        "machine, but without the PostgreSQL server's own CPU):",
        "",
        *cpu_table(results.get("comparisons", [])),
        "",
        "Our stages, wall seconds (process CPU seconds):",
        "",
        *stages_table(results.get("comparisons", [])),
        "",
        "#### Ours vs dlt, fact target, per strategy (upsert and replace: a rerun onto the same rows)",
        "",
        *strategies_table(results.get("strategies", [])),
        "",
        "### 2. Peak RSS (fresh process per measurement)",
        "",
        *memory_table(results.get("memory", {"peak_rss_mib": {}, "largest": None, "goal_met": None})),
        "",
        "### 3. XCom size of each stage result (bytes of `model_dump(mode='json')`)",
        "",
        *xcom_table(results.get("xcom", {})),
        "",
        "### 4. Parse cost",
        "",
        *parse_table(results.get("parse", {}), results.get("dag_parse", {})),
        "",
        "### 5. Parallel extraction",
        "",
        *parallel_lines(results.get("parallel", {"error": "not run"})),
        "",
        "### 6. Agent economy (FakeClaude usage, list prices)",
        "",
        *agents_lines(results.get("agents", {"status": "not run"})),
        *dagrun_lines(results.get("dagrun")),
        "",
        "### 7. Cold start of a small daily pipeline (`airflow dags test`)",
        "",
        *coldstart_lines(results.get("coldstart")),
        "",
    ]
    return "\n".join(lines)


def coldstart_lines(d: dict[str, Any] | None) -> list[str]:
    from benchmarks.coldstart import lines

    return lines(d)


def write(results: dict[str, Any], out: Path, markdown: Path) -> None:
    """Write the JSON results and their Markdown rendering."""
    for path in (out, markdown):
        path.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    markdown.write_text(render(results))
