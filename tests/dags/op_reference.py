"""The reference Airflow DAG (dags/daily_user_engagement.py), loaded into the tests' DAG bundle.

``dag.test()`` only runs DAGs of a configured bundle, so the tests' DAG folder runs the file here;
the DAG it declares is registered under this module. (Airflow's safe-mode parser needs the words
"airflow" and "dag" in a DAG file, which this docstring provides.)
"""

from __future__ import annotations

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / "dags" / "daily_user_engagement.py"))
