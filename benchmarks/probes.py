"""Small measurements: parse cost, the reference DAG's parse time, and parallel extraction.

Parse cost: each sample is a fresh interpreter that times ``import airflow.sdk`` and then the
code under test (an import, or an import plus operator construction); what counts is the time
the code adds over ``airflow.sdk``. The median of several samples is reported (a first, unmeasured
run lets Airflow write its config). Airflow runs with an isolated ``AIRFLOW_HOME`` under
``var/bench``.

Parallel extraction: four HTTP sources on a local stdlib server whose endpoint sleeps 1 s,
extracted by one ``extract_sources`` call with ``max_workers=4`` — first in a fresh process (the
first call also imports requests, DuckDB and pyarrow's writers), then again (the figure), then with
``max_workers=1`` for contrast.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.workload import REPO, bench_dir

DAGS = REPO / "dags"

_STAGE_OPERATORS = """
from airflow_agent_provider.operators import (
    ExtractOperator, LoadOperator, PipelineReportOperator, TransformOperator, ValidateOperator,
)
ExtractOperator(task_id="extract", sources=[{"name": "events", "type": "file", "path": "/tmp/e.csv"}])
ValidateOperator(task_id="validate", upstream=None, dataset="events", expected_schema={"event_id": "integer"})
TransformOperator(task_id="transform", upstream=None, transformations=[{"name": "t", "type": "sql", "sql": "SELECT 1"}],
                  output_dataset="out")
LoadOperator(task_id="load", upstream=None, conn_id="wh", target_table="t")
PipelineReportOperator(task_id="report")
"""
_JUDGMENT_OPERATORS = """
from airflow_agent_provider.operators import RemediationBranchOperator, SchemaRemediationOperator
RemediationBranchOperator(task_id="route", validation=None, branches={"a": "x"}, on_pass="a", fallback="a")
SchemaRemediationOperator(task_id="fix", validation=None, expected_schema={"event_id": "integer"})
"""
OURS = "airflow_agent_provider.operators: all 7 operators imported and constructed"
PARSE_TARGETS = {
    "nothing (noise floor)": "pass",
    "airflow_agent_provider.operators: package import (lazy)": "import airflow_agent_provider.operators",
    "airflow_agent_provider.operators: the 5 stage operators imported and constructed": _STAGE_OPERATORS,
    OURS: _STAGE_OPERATORS + _JUDGMENT_OPERATORS,
    "airflow.providers.standard.operators.python: imported, PythonOperator constructed": (
        "from airflow.providers.standard.operators.python import PythonOperator\n"
        "PythonOperator(task_id='t', python_callable=print)"
    ),
    "airflow.providers.anthropic.operators: agent and batch modules imported": (
        "import airflow.providers.anthropic.operators.agent\nimport airflow.providers.anthropic.operators.batch"
    ),
}
_PARSE_SCRIPT = """
import json, os, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
exec(compile(os.environ["BENCH_CODE"], "<probe>", "exec"), {})
t2 = time.perf_counter()
print(json.dumps({"sdk_s": t1 - t0, "added_s": t2 - t1}))
"""
_DAGBAG_SCRIPT = """
import json, os, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder=os.environ["BENCH_DAGS"])
t1 = time.perf_counter()
stats = [{"file": os.path.basename(s.file), "duration_s": s.duration.total_seconds(), "dags": s.dag_num,
          "tasks": s.task_num} for s in bag.dagbag_stats]
errors = {k: str(v)[:300] for k, v in bag.import_errors.items()}
print(json.dumps({"dagbag_s": t1 - t0, "files": stats, "errors": errors}))
"""


def airflow_env(**extra: str) -> dict[str, str]:
    """An isolated Airflow home for the probes (no examples, SQLite metadata DB under var/bench)."""
    home = bench_dir() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ANTHROPIC_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AGENT_PROVIDER_HOME": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    return env | extra


def _python(script: str, env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        return {"error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def parse_cost(samples: int) -> dict[str, Any]:
    """Median import (+ construction) time each target adds over ``import airflow.sdk``."""
    import importlib.util

    _python(_PARSE_SCRIPT, airflow_env(BENCH_CODE="pass"))  # first run writes airflow.cfg: not measured
    rows: dict[str, Any] = {}
    for label, code in PARSE_TARGETS.items():
        runs = [_python(_PARSE_SCRIPT, airflow_env(BENCH_CODE=code)) for _ in range(samples)]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            rows[label] = {"error": errors[0]}
            continue
        rows[label] = {
            "added_ms": round(statistics.median(r["added_s"] for r in runs) * 1000, 1),
            "added_ms_min": round(min(r["added_s"] for r in runs) * 1000, 1),
            "airflow_sdk_ms": round(statistics.median(r["sdk_s"] for r in runs) * 1000, 1),
            "samples": samples,
        }
    common_ai = importlib.util.find_spec("airflow.providers.common") is not None and _has("airflow.providers.common.ai")
    rows["airflow.providers.common.ai"] = {"status": "installed" if common_ai else "not installed (not measured)"}
    return rows


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def dag_parse(samples: int) -> dict[str, Any]:
    """The reference DAG file's parse time as the DagBag records it, fresh interpreter per sample."""
    runs = [_python(_DAGBAG_SCRIPT, airflow_env(BENCH_DAGS=str(DAGS))) for _ in range(samples)]
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    per_file: dict[str, list[float]] = {}
    for run in good:
        for stat in run["files"]:
            per_file.setdefault(stat["file"], []).append(stat["duration_s"])
    return {
        "files": {name: {"parse_ms": round(statistics.median(v) * 1000, 1)} for name, v in per_file.items()},
        "dagbag_ms": round(statistics.median(r["dagbag_s"] for r in good) * 1000, 1),
        "tasks": {s["file"]: s["tasks"] for s in good[-1]["files"]},
        "import_errors": good[-1]["errors"],
        "samples": len(good),
    }


# ---------------------------------------------------------------- parallel extraction

SLOW_SECONDS = 1.0
HTTP_SOURCES = 4


class _SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SLOW_SECONDS)
        body = json.dumps({"data": [{"id": i, "value": f"row {i}"} for i in range(100)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _uri(folder: Path, name: str) -> str:
    return str(folder / name)


def parallel_extraction(work_dir: Path) -> dict[str, Any]:
    """Four 1-second HTTP sources in one ``extract_sources`` call, with 4 workers and with 1."""
    from airflow_agent_provider.contracts import parse_sources
    from airflow_agent_provider.engines.extract import HttpEndpoint, extract_sources

    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = HttpEndpoint(base_url=f"http://127.0.0.1:{server.server_port}")
    specs = [
        {"name": f"api_{i}", "type": "http", "conn_id": "slow_api", "endpoint": f"/slow/{i}", "records_path": "data"}
        for i in range(HTTP_SOURCES)
    ]
    runs = {}

    def endpoint_of(_conn_id: str) -> HttpEndpoint:
        return endpoint

    try:
        for label, workers in (("cold", HTTP_SOURCES), ("parallel", HTTP_SOURCES), ("one_worker", 1)):
            started = time.perf_counter()
            result = extract_sources(
                parse_sources(specs),
                dataset_uri=functools.partial(_uri, work_dir / label),
                http_endpoint=endpoint_of,
                max_workers=workers,
            )
            runs[label] = {"seconds": round(time.perf_counter() - started, 3), "rows": result.metrics["total_rows"]}
    finally:
        server.shutdown()
        server.server_close()
    return {
        "sources": HTTP_SOURCES,
        "endpoint_sleep_s": SLOW_SECONDS,
        "sequential_equivalent_s": HTTP_SOURCES * SLOW_SECONDS,
        "parallel_s": runs["parallel"]["seconds"],
        "first_call_s": runs["cold"]["seconds"],
        "one_worker_s": runs["one_worker"]["seconds"],
        "rows": runs["parallel"]["rows"],
    }
