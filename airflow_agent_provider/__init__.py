"""Apache Airflow 3 provider: ETL stages as operators, state threaded through XCom, Claude at the judgment points."""

from __future__ import annotations

__version__ = "0.1.0"
