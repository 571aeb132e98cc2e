"""DAG files import the operators at every parse: that import must stay cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "duckdb", "pyarrow", "anthropic", "sqlglot", "numpy")
REFERENCE_DAG = Path(__file__).resolve().parents[2] / "dags" / "daily_user_engagement.py"
PROBE = f"""
import json, runpy, sys, time
import airflow.sdk
started = time.perf_counter()
from airflow_agent_provider.operators import (
    ExtractOperator, LoadOperator, PipelineReportOperator, TransformOperator, ValidateOperator,
)
seconds = time.perf_counter() - started
runpy.run_path({str(REFERENCE_DAG)!r})
print(json.dumps({{"seconds": seconds, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


class TestImportCost:
    def test_operators_and_the_reference_dag_import_no_heavy_library_and_add_under_50ms(self) -> None:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        assert probe["heavy"] == []
        assert probe["seconds"] < 0.05
