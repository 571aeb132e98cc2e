"""Dataset names by OpenLineage's naming conventions, from real Airflow connections (no database asked)."""

from __future__ import annotations

import pytest
from airflow.sdk import Connection

from airflow_agent_provider.contracts import DatasetOrigin, FileSource, HttpSource, SqlSource
from airflow_agent_provider.lineage import naming

PG = Connection(
    conn_id="pg", conn_type="postgres", host="warehouse.internal", port=5433, schema="events",
    login="etl_user", password="hunter2-secret",
)  # fmt: skip


class TestSqlNames:
    def test_postgres_tables_are_host_port_and_database_schema_table_without_credentials(self) -> None:
        query = "SELECT e.id, u.name FROM events e JOIN crm.users u ON u.id = e.user_id WHERE e.day = :day"

        found = naming.sql_origins(PG, query)

        assert found == [
            DatasetOrigin(namespace="postgres://warehouse.internal:5433", name="events.crm.users"),
            DatasetOrigin(namespace="postgres://warehouse.internal:5433", name="events.public.events"),
        ]
        assert not any("hunter2" in o.namespace or "etl_user" in o.namespace for o in found)

    def test_postgres_without_a_port_takes_5432(self) -> None:
        conn = Connection(conn_id="pg", conn_type="postgres", host="db", schema="dw")
        assert naming.table_origin(conn, "marts.daily") == DatasetOrigin(
            namespace="postgres://db:5432", name="dw.marts.daily"
        )

    def test_sqlite_tables_are_named_in_the_database_files_namespace(self) -> None:
        conn = Connection.from_uri("sqlite:////var/data/events.db", conn_id="src")

        assert naming.sql_origins(conn, "SELECT * FROM events WHERE ts >= :start") == [
            DatasetOrigin(namespace="sqlite:///var/data/events.db", name="events")
        ]
        assert naming.table_origin(conn, "user_engagement_daily") == DatasetOrigin(
            namespace="sqlite:///var/data/events.db", name="user_engagement_daily"
        )

    def test_a_query_that_does_not_parse_names_nothing_instead_of_failing(self) -> None:
        conn = Connection.from_uri("sqlite:////var/data/events.db", conn_id="src")
        assert naming.sql_origins(conn, "SELEC FROM WHERE ((") == []


class TestFileAndHttpNames:
    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            pytest.param("/data/in/campaigns.csv", ("file", "/data/in/campaigns.csv"), id="local-path"),
            pytest.param("file:///data/in/c.csv", ("file", "/data/in/c.csv"), id="file-uri"),
            pytest.param("s3://raw-bucket/in/day=1/c.parquet", ("s3://raw-bucket", "in/day=1/c.parquet"), id="s3"),
            pytest.param("s3://aws_default@raw-bucket/in/c.csv", ("s3://raw-bucket", "in/c.csv"), id="s3-conn-id"),
            pytest.param("gs://b/k.json", ("gs://b", "k.json"), id="gcs"),
        ],
    )
    def test_files_by_path_and_objects_by_bucket_and_key(self, uri: str, expected: tuple[str, str]) -> None:
        assert naming.uri_origin(uri) == DatasetOrigin(namespace=expected[0], name=expected[1])
        assert naming.source_origins(FileSource(name="c", type="file", path=uri, format="csv")) == [
            DatasetOrigin(namespace=expected[0], name=expected[1])
        ]

    def test_an_http_source_keeps_no_credentials_and_no_query_string(self) -> None:
        source = HttpSource(name="users", type="http", endpoint="/v1/users?api_key=s3cr3t&page=1")

        [origin] = naming.source_origins(source, "https://bot:hunter2@api.example.com:8443/")

        assert origin == DatasetOrigin(namespace="https://api.example.com:8443", name="/v1/users")

    def test_a_sql_source_is_named_through_its_connection(self) -> None:
        source = SqlSource(name="e", type="sql", conn_id="pg", query="SELECT * FROM raw.events")
        assert naming.source_origins(source, PG) == [
            DatasetOrigin(namespace="postgres://warehouse.internal:5433", name="events.raw.events")
        ]


class TestStagedNames:
    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            pytest.param(
                "/stage/daily/manual__2026-11-10T00_00_00_00_00-1a2b3c4d/transform/out",
                ("file", "/stage/daily/transform/out"), id="local",
            ),
            pytest.param(
                "s3://aws@bucket/stage/daily/scheduled_1/extract/map_2/events",
                ("s3://bucket", "stage/daily/extract/map_2/events"), id="mapped-s3",
            ),
            pytest.param("/elsewhere/not/staged/here/x", ("file", "/elsewhere/not/staged/here/x"), id="not-staged"),
        ],
    )  # fmt: skip
    def test_staged_data_is_one_dataset_across_runs(self, uri: str, expected: tuple[str, str]) -> None:
        assert naming.staged_origin(uri, "daily") == DatasetOrigin(namespace=expected[0], name=expected[1])
