"""Warehouse-native extract on the real PostgreSQL: sources become run-scoped tables in the warehouse."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import parse_sources
from airflow_agent_provider.engines import extract as extract_engine
from airflow_agent_provider.engines import warehouse_staging as ws
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.exceptions import RowCountTooLow, SourceError, UnsafeIdentifier

STAGING = ws.WarehouseStaging("wh", "agent_staging", "daily", "scheduled__2024-01-02", "extract")


def seed_orders(engine: sa.Engine, rows: int = 50) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id bigint PRIMARY KEY, amount double precision, day date)")
        conn.exec_driver_sql(
            f"INSERT INTO orders SELECT g, g * 1.5, DATE '2024-01-01' + (g %% 3) FROM generate_series(1, {rows}) g"
        )


def run(sources: list[dict[str, Any]], engine: sa.Engine, **kwargs: Any) -> Any:
    return extract_sources(
        parse_sources(sources),
        dataset_uri=lambda name: pytest.fail("warehouse mode must not stage Parquet"),
        sql_engine=lambda conn_id: engine,
        warehouse=STAGING,
        **kwargs,
    )


def test_sql_source_on_the_staging_warehouse_is_created_in_place(warehouse: sa.Engine, monkeypatch) -> None:
    seed_orders(warehouse)

    def no_rows_through_the_worker(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the rows were read into the worker")

    monkeypatch.setattr(extract_engine, "extract_sql", no_rows_through_the_worker)
    monkeypatch.setattr(extract_engine, "Sink", no_rows_through_the_worker)
    query = "SELECT id, amount, day FROM orders WHERE day >= :since"
    result = run(
        [{"name": "orders", "type": "sql", "conn_id": "wh", "query": query, "parameters": {"since": "2024-01-02"}}],
        warehouse,
    )

    ref = result.datasets["orders"]
    table = STAGING.table("orders")
    assert ref.uri == f"postgres://wh/agent_staging.{table.table}"
    assert table.table.startswith(ws.run_prefix("daily", "scheduled__2024-01-02"))
    assert ref.columns == {"id": "integer", "amount": "float", "day": "date"}
    with warehouse.connect() as conn:
        expected = conn.exec_driver_sql("SELECT count(*) FROM orders WHERE day >= DATE '2024-01-02'").scalar()
        staged = conn.exec_driver_sql(f"SELECT count(*) FROM {table.sql}").scalar()
    assert ref.row_count == staged == expected == 34
    assert result.metrics["data_location"] == {"orders": ref.uri}


def test_rerun_restages_the_same_table_with_the_same_checksum(warehouse: sa.Engine) -> None:
    seed_orders(warehouse)
    source = [{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders;"}]
    first = run(source, warehouse).datasets["orders"]
    second = run(source, warehouse).datasets["orders"]
    assert (first.uri, first.row_count, first.checksum) == (second.uri, 50, second.checksum)


def test_checksum_changes_with_the_data(warehouse: sa.Engine) -> None:
    seed_orders(warehouse)
    source = [{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders"}]
    before = run(source, warehouse).datasets["orders"]
    with warehouse.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET amount = amount + 1 WHERE id = 7")
    after = run(source, warehouse).datasets["orders"]
    assert before.checksum != after.checksum and before.row_count == after.row_count


def test_file_source_is_bulk_copied_into_a_table(
    warehouse: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the scratch Parquet goes
    csv = tmp_path / "campaigns.csv"
    csv.write_text("campaign_id,name,budget\n1,spring,10.5\n2,summer,20\n3,autumn,\n")
    result = run([{"name": "campaigns", "type": "file", "path": str(csv), "format": "csv"}], warehouse)
    ref = result.datasets["campaigns"]
    assert ws.is_table_uri(ref.uri) and ref.row_count == 3
    assert ref.columns == {"campaign_id": "integer", "name": "string", "budget": "float"}
    with warehouse.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT name, budget FROM {ws.StagedTable.parse(ref.uri).sql} ORDER BY 1").all()
    assert rows == [("autumn", None), ("spring", 10.5), ("summer", 20.0)]
    assert not list(scratch.iterdir())  # the scratch Parquet is gone


def test_sql_source_on_another_database_is_copied_in(warehouse: sa.Engine, sqlite_url: str) -> None:
    other = sa.create_engine(sqlite_url)
    with other.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (user_id INTEGER, country TEXT)")
        conn.exec_driver_sql("INSERT INTO users VALUES (1, 'DE'), (2, 'FR')")
    result = extract_sources(
        parse_sources([{"name": "users", "type": "sql", "conn_id": "crm", "query": "SELECT * FROM users"}]),
        dataset_uri=lambda name: "unused",
        sql_engine=lambda conn_id: other,
        warehouse=STAGING,
    )
    assert result.datasets["users"].row_count == 2
    assert result.datasets["users"].columns == {"user_id": "integer", "country": "string"}


def test_too_few_rows_fail_like_the_parquet_path(warehouse: sa.Engine) -> None:
    seed_orders(warehouse)
    with pytest.raises(RowCountTooLow, match="returned 0 rows"):
        run(
            [{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders WHERE id < 0"}],
            warehouse,
        )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM orders; DROP TABLE orders",
        "SELECT 1 AS x) AS a; DROP TABLE orders; SELECT * FROM (SELECT 1 AS x",  # closes the wrapper
    ],
)
def test_a_second_statement_does_not_run(warehouse: sa.Engine, query: str) -> None:
    seed_orders(warehouse)
    with pytest.raises(SourceError, match=r"orders.*one SELECT statement"):
        run([{"name": "orders", "type": "sql", "conn_id": "wh", "query": query}], warehouse)
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 50


def test_semicolons_in_strings_and_comments_are_fine(warehouse: sa.Engine) -> None:
    seed_orders(warehouse)
    query = "SELECT id, 'a;b' AS note, $$c;d$$ AS other FROM orders /* ; */ -- ;\n"
    result = run([{"name": "orders", "type": "sql", "conn_id": "wh", "query": query + "\nWHERE id < 3"}], warehouse)
    assert result.datasets["orders"].row_count == 2


def test_table_uri_round_trips_and_refuses_unsafe_names() -> None:
    table = STAGING.table("orders")
    assert ws.StagedTable.parse(table.uri) == table
    assert table.sql == f'"agent_staging"."{table.table}"' and len(table.table) <= 63
    with pytest.raises(UnsafeIdentifier):
        ws.StagedTable.parse('postgres://wh/agent_staging.x"; DROP TABLE y')
    with pytest.raises(UnsafeIdentifier):
        ws.WarehouseStaging("wh", "bad schema", "d", "r", "t")
    assert not ws.is_table_uri("s3://aws@bucket/x") and not ws.is_table_uri("/tmp/staging/x")


def test_retention_drops_every_table_of_the_run_and_only_those(warehouse: sa.Engine) -> None:
    from airflow_agent_provider.engines.staging import retention

    seed_orders(warehouse)
    source = [{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders"}]
    uris = []
    for run_id in ("scheduled__2024-01-02", "scheduled__2024-01-03"):
        staging = ws.WarehouseStaging("wh", "agent_staging", "daily", run_id, "extract")
        uris.append(
            extract_sources(parse_sources(source), dataset_uri=str, sql_engine=lambda c: warehouse, warehouse=staging)
            .datasets["orders"]
            .uri
        )
    with warehouse.begin() as conn:  # a transform step's table of the first run, not named in any result
        conn.exec_driver_sql(
            f'CREATE TABLE agent_staging."{ws.run_prefix("daily", "scheduled__2024-01-02")}abc123_s_step" (x int)'
        )

    folders = retention.run_folders("daily", "scheduled__2024-01-02", uris=uris)
    assert folders == [f"postgres://wh/agent_staging.{ws.run_prefix('daily', 'scheduled__2024-01-02')}*"]
    assert [retention.remove(folder) for folder in folders] == [True]
    assert [retention.remove(folder) for folder in folders] == [False]

    with warehouse.connect() as conn:
        left = [
            r[0] for r in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'agent_staging'")
        ]
    assert left == [ws.StagedTable.parse(uris[1]).table]
    with pytest.raises(ws.WarehouseStagingError):
        ws.drop_tables_matching("postgres://wh/agent_staging.*")


def test_a_staging_connection_that_is_not_postgresql_is_refused(sqlite_url: str) -> None:
    installed = ws._CONNECTOR.make
    ws.set_connector(lambda conn_id: sa.create_engine(sqlite_url))
    try:
        with pytest.raises(SourceError, match="tested on PostgreSQL only"):
            run(
                [{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT 1 AS x"}],
                sa.create_engine(sqlite_url),
            )
    finally:
        ws.set_connector(installed)


def test_lineage_names_a_staging_table_the_same_in_every_run() -> None:
    from airflow_agent_provider.lineage.naming import staged_origin

    first, second = (
        staged_origin(ws.WarehouseStaging("wh", "agent_staging", "daily", run, "extract").uri("orders"), "daily")
        for run in ("scheduled__2024-01-02", "scheduled__2024-01-03")
    )
    assert first == second
    origin = first
    assert origin.namespace == "postgres://wh" and origin.name.startswith("agent_staging.aap_")
    assert origin.name.endswith("_orders")


def test_checksum_of_a_table_with_a_json_column_changes_with_the_data(warehouse: sa.Engine) -> None:
    with warehouse.begin() as conn:  # json has no hash function: the row is hashed through its text
        conn.exec_driver_sql("CREATE TABLE docs (id bigint, body json)")
        conn.exec_driver_sql("""INSERT INTO docs VALUES (1, '{"a": 1}'), (2, '{"a": 2}')""")
    source = [{"name": "docs", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM docs"}]
    before = run(source, warehouse).datasets["docs"]
    assert run(source, warehouse).datasets["docs"].checksum == before.checksum
    with warehouse.begin() as conn:
        conn.exec_driver_sql("""UPDATE docs SET body = '{"a": 3}' WHERE id = 2""")
    assert run(source, warehouse).datasets["docs"].checksum != before.checksum


def test_staging_tables_are_unlogged(warehouse: sa.Engine) -> None:
    seed_orders(warehouse)
    ref = run([{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders"}], warehouse)
    table = ws.StagedTable.parse(ref.datasets["orders"].uri)
    with warehouse.connect() as conn:
        persistence = conn.exec_driver_sql(f"SELECT relpersistence FROM pg_class WHERE oid = '{table.sql}'::regclass")
        assert persistence.scalar() == "u"  # no WAL for run-scoped tables; the stages that read them check them


@pytest.mark.parametrize(
    "query",
    [
        "SELECT id, pg_read_file('/etc/hostname') AS f FROM orders",
        "SELECT id, table_to_xml('public.orders', true, false, '') AS x FROM orders",
        "SELECT setval('orders_seq', 100) AS v",
    ],
)
def test_a_query_staged_in_place_may_not_call_what_a_read_only_read_would_refuse(
    warehouse: sa.Engine, query: str
) -> None:
    seed_orders(warehouse)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE orders_seq")
    with pytest.raises(SourceError, match=r"orders.*is not allowed in a query staged inside the warehouse"):
        run([{"name": "orders", "type": "sql", "conn_id": "wh", "query": query}], warehouse)
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("SELECT last_value FROM orders_seq").scalar() == 1


def test_a_source_with_another_login_to_the_same_database_is_read_as_that_login(
    warehouse: sa.Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_orders(warehouse, rows=5)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS aap_reader; CREATE ROLE aap_reader LOGIN")
        conn.exec_driver_sql("GRANT USAGE ON SCHEMA public TO aap_reader; GRANT SELECT ON orders TO aap_reader")
    reader = sa.create_engine(sa.engine.make_url(pg_url).set(username="aap_reader"))
    read: list[str] = []
    real = extract_engine.extract_sql
    monkeypatch.setattr(
        extract_engine, "extract_sql", lambda source, *a, **k: read.append(source.name) or real(source, *a, **k)
    )
    try:
        result = extract_sources(
            parse_sources([{"name": "orders", "type": "sql", "conn_id": "crm", "query": "SELECT * FROM orders"}]),
            dataset_uri=lambda name: "unused",
            sql_engine=lambda conn_id: reader,
            warehouse=STAGING,
        )
    finally:
        reader.dispose()
        with warehouse.begin() as conn:
            conn.exec_driver_sql("DROP OWNED BY aap_reader; DROP ROLE aap_reader")
    assert read == ["orders"] and result.datasets["orders"].row_count == 5  # read through its own session, copied in


def test_a_mixed_case_staging_schema_is_described(warehouse: sa.Engine) -> None:
    seed_orders(warehouse, rows=4)
    staging = ws.WarehouseStaging("wh", "Agent_Stage", "daily", "scheduled__2024-01-02", "extract")
    try:
        result = extract_sources(
            parse_sources([{"name": "orders", "type": "sql", "conn_id": "wh", "query": "SELECT * FROM orders"}]),
            dataset_uri=lambda name: "unused",
            sql_engine=lambda conn_id: warehouse,
            warehouse=staging,
        )
        assert result.datasets["orders"].row_count == 4 and result.datasets["orders"].bytes > 0
    finally:
        with warehouse.begin() as conn:
            conn.exec_driver_sql('DROP SCHEMA IF EXISTS "Agent_Stage" CASCADE')
