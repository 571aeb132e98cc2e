"""The deterministic core: one module per stage, plain values in and out, no Airflow imports."""
