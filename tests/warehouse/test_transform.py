"""Warehouse-native transform on the real PostgreSQL: DuckDB-dialect SQL transpiled, through the same gate."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef, parse_sources, parse_transformations
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.engines.transform import run_transformations
from airflow_agent_provider.exceptions import TransformError

SEED = """
CREATE TABLE src_events (user_id bigint, ts timestamp, amount double precision);
INSERT INTO src_events VALUES (1, '2024-01-01 10:00', 5), (1, '2024-01-01 12:00', 7), (2, '2024-01-01 09:00', 1),
  (2, '2024-01-02 09:00', 100), (3, '2024-01-01 08:00', 2);
CREATE TABLE src_users (user_id bigint, country text);
INSERT INTO src_users VALUES (1, 'DE'), (2, 'FR');
"""
OUT = ws.WarehouseStaging("wh", "agent_staging", "d", "r", "transform")


@pytest.fixture
def inputs(warehouse: sa.Engine) -> dict[str, DatasetRef]:
    with warehouse.begin() as conn:
        conn.exec_driver_sql(SEED)
    sources = [
        {"name": "events", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM src_events"},
        {"name": "users", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM src_users"},
    ]
    result = extract_sources(
        parse_sources(sources),
        dataset_uri=lambda name: "unused",
        sql_engine=lambda conn_id: warehouse,
        warehouse=ws.WarehouseStaging("wh", "agent_staging", "d", "r", "extract"),
    )
    return dict(result.datasets)


def run(inputs: dict[str, DatasetRef], steps: list[dict[str, Any]], **kwargs: Any) -> Any:
    return run_transformations(
        inputs, parse_transformations(steps), output_dataset="daily", output_uri=OUT.uri("daily"), **kwargs
    )


DUCKDB_STEPS = [
    {"name": "enriched", "type": "sql",
     "sql": "SELECT e.*, u.country FROM events e LEFT JOIN users u USING (user_id) "
            "WHERE u.country LIKE '%E' OR u.country LIKE 'F%'"},
    {"name": "daily", "type": "sql",
     "sql": "SELECT user_id, country, CAST(ts AS DATE) AS day, count(*) AS n, sum(amount)::DOUBLE AS total, "
            "strftime(min(ts), '%Y-%m-%d %H') AS first_hour FROM enriched GROUP BY ALL ORDER BY ALL"},
]  # fmt: skip


def test_duckdb_sql_runs_in_the_warehouse_and_stages_a_table(
    warehouse: sa.Engine, inputs: dict[str, DatasetRef]
) -> None:
    result = run(inputs, DUCKDB_STEPS)
    ref = result.datasets["daily"]
    assert ref.uri == OUT.uri("daily") and ref.row_count == 3
    assert result.metrics["rows_before"] == 7 and result.metrics["rows_after"] == 3
    assert result.metrics["transformation_details"]["daily"]["rows"] == 3
    with warehouse.connect() as conn:
        table = ws.StagedTable.parse(ref.uri).sql
        rows = conn.exec_driver_sql(
            f"SELECT user_id, country, day::text, n, total, first_hour FROM {table} ORDER BY 1, 3"
        ).all()
        leftovers = conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%%_s_enriched'").scalar()
    assert [tuple(r) for r in rows] == [
        (1, "DE", "2024-01-01", 2, 12.0, "2024-01-01 10"),
        (2, "FR", "2024-01-01", 1, 1.0, "2024-01-01 09"),
        (2, "FR", "2024-01-02", 1, 100.0, "2024-01-02 09"),
    ]
    assert leftovers == 0  # the intermediate step's table is dropped
    assert run(inputs, DUCKDB_STEPS).datasets["daily"].checksum == ref.checksum  # a rerun restages the same


def test_postgres_dialect_is_written_as_is(inputs: dict[str, DatasetRef]) -> None:
    sql = (
        "SELECT user_id, date_trunc('day', ts)::date AS day, string_agg(amount::text, ',' ORDER BY ts) AS amounts "
        "FROM events GROUP BY 1, 2"
    )
    steps = [{"name": "daily", "type": "sql", "sql": sql}]
    assert run(inputs, steps, dialect="postgres").datasets["daily"].row_count == 4


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM src_users", "not allowed"),
        ("SELECT * FROM public.src_users", "not allowed"),
        ("SELECT pg_read_file('/etc/passwd') AS x FROM events", "not allowed"),
        ("SELECT current_setting('data_directory') AS x FROM events", "not allowed"),
        ("SELECT table_to_xml('public.src_users', true, false, '') AS x FROM events", "not allowed"),
        ("SELECT database_to_xml(true, false, '') AS x FROM events", "not allowed"),
        ("SELECT * FROM events; DROP TABLE src_users", "single SELECT"),
        ("DELETE FROM events", "SELECT"),
    ],
)
def test_the_sql_gate_refuses_the_same_in_the_warehouse(
    inputs: dict[str, DatasetRef], warehouse: sa.Engine, sql: str, why: str
) -> None:
    with pytest.raises(TransformError, match=why):
        run(inputs, [{"name": "daily", "type": "sql", "sql": sql}])
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM src_users").scalar() == 2


def test_python_steps_are_refused_in_the_warehouse(inputs: dict[str, DatasetRef]) -> None:
    with pytest.raises(TransformError, match=r"write the step in SQL, or stage this data as Parquet"):
        run(inputs, [{"name": "daily", "type": "python", "callable": "tests.engines.transforms_for_tests:passthrough"}])


def test_mixed_parquet_and_table_inputs_are_refused(inputs: dict[str, DatasetRef]) -> None:
    mixed = {**inputs, "other": DatasetRef(uri="/tmp/x", row_count=0, columns={}, checksum="")}
    with pytest.raises(ValueError, match="all be warehouse staging tables"):
        run(mixed, DUCKDB_STEPS)


def test_a_stage_that_reads_parquet_only_names_the_table_and_the_limit(inputs: dict[str, DatasetRef]) -> None:
    from airflow_agent_provider.engines import staging

    with pytest.raises(
        staging.StagingError, match=r"warehouse staging table .* Python transformation steps .* as Parquet"
    ):
        staging.part_files(inputs["events"].uri)


def test_an_input_emptied_since_it_was_staged_is_refused(warehouse: sa.Engine, inputs: dict[str, DatasetRef]) -> None:
    with warehouse.begin() as conn:  # what crash recovery does to an unlogged staging table
        conn.exec_driver_sql(f"TRUNCATE {ws.StagedTable.parse(inputs['events'].uri).sql}")
    with pytest.raises(ws.WarehouseStagingError, match="rerun the run from its extract"):
        run(inputs, DUCKDB_STEPS)
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT to_regclass('{OUT.table('daily').sql}')").scalar() is None


def test_the_output_table_is_unlogged(warehouse: sa.Engine, inputs: dict[str, DatasetRef]) -> None:
    ref = run(inputs, DUCKDB_STEPS).datasets["daily"]
    with warehouse.connect() as conn:
        persistence = conn.exec_driver_sql(
            f"SELECT relpersistence FROM pg_class WHERE oid = '{OUT.table('daily').sql}'::regclass"
        )
        assert (persistence.scalar(), ref.row_count) == ("u", 3)


def test_alike_subqueries_without_alias_get_their_own_alias(inputs: dict[str, DatasetRef]) -> None:
    sql = "SELECT count(*) AS pairs FROM (SELECT user_id FROM events) JOIN (SELECT user_id FROM events) USING (user_id)"
    ref = run(inputs, [{"name": "daily", "type": "sql", "sql": sql}]).datasets["daily"]
    assert ref.row_count == 1  # PostgreSQL refuses two subqueries of one alias in one FROM


@pytest.mark.parametrize("source", ["range(1, 4) AS r(x)", "generate_series(1, 3) AS r(x)"])
def test_the_table_functions_the_gate_allows_run_in_the_warehouse(
    warehouse: sa.Engine, inputs: dict[str, DatasetRef], source: str
) -> None:
    sql = f"SELECT r.x, count(e.user_id) AS n FROM {source} LEFT JOIN events e ON e.user_id = r.x GROUP BY r.x"
    ref = run(inputs, [{"name": "daily", "type": "sql", "sql": sql}]).datasets["daily"]
    with warehouse.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT x, n FROM {ws.StagedTable.parse(ref.uri).sql} ORDER BY x").all()
    assert [tuple(r) for r in rows] == [(1, 2), (2, 2), (3, 1)]  # DuckDB's range excludes its end, as here
