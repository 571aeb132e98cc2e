"""DAG files import the operators at every parse: that import must stay cheap.

Cheap is checked by what the import loads, which is deterministic: nothing heavy, and nothing but
the provider's own modules on top of ``airflow.sdk``. Its time is measured by the benchmarks' parse
cost section (a timed assertion here failed on a loaded machine without any change to the import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "duckdb", "pyarrow", "anthropic", "sqlglot", "numpy")
REFERENCE_DAG = Path(__file__).resolve().parents[2] / "dags" / "daily_user_engagement.py"
PROBE = f"""
import json, runpy, sys
import airflow.sdk
before = set(sys.modules)
from airflow_agent_provider.operators import (
    ExtractOperator, LoadOperator, PipelineReportOperator, TransformOperator, ValidateOperator,
)
added = sorted(set(sys.modules) - before)
runpy.run_path({str(REFERENCE_DAG)!r})
print(json.dumps({{"added": added, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


class TestImportCost:
    def test_operators_and_the_reference_dag_import_no_heavy_library_and_only_our_modules(self) -> None:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        assert probe["heavy"] == []
        foreign = [m for m in probe["added"] if m.split(".")[0] != "airflow_agent_provider"]
        assert foreign == []
        assert len(probe["added"]) <= 12, probe["added"]
