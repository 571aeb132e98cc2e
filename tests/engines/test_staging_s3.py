"""Every stage on object-store staging: the same pipeline staged in moto's S3 and in a local folder.

The engines get the S3 root as the operators hand it over (an area opened from the ``s3_staging``
connection and mounted); results, checksums and the warehouse table must not depend on where the
data was staged, and the part files must really be in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import (
    DatasetRef,
    StageResult,
    parse_quality_rules,
    parse_sources,
    parse_transformations,
)
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.extract import extract_sources
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.quarantine import quarantine_dataset
from airflow_agent_provider.engines.staging import area as staging_area
from airflow_agent_provider.engines.staging import retention as staging_retention
from airflow_agent_provider.engines.transform import run_transformations
from airflow_agent_provider.engines.validate import validate_dataset
from tests.objectstore import S3Staging

ORDERS_CSV = "order_id,customer_id,amount,status\n1,1,10.5,paid\n2,2,-3.0,paid\n3,1,7.25,refunded\n4,3,99.0,odd\n"
RULES = parse_quality_rules(
    [
        {"column": "amount", "rule": "range", "min": 0},
        {"column": "status", "rule": "in_list", "values": ["paid", "refunded"]},
        {"column": "order_id", "rule": "unique"},
    ]
)
STEPS = parse_transformations(
    [
        {
            "name": "per_customer",
            "type": "sql",
            "sql": "SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY customer_id",
        }
    ]
)


@pytest.fixture
def s3_root(s3_staging: S3Staging) -> Iterator[str]:
    """The S3 staging root, opened from its connection and mounted as the operators do."""
    from airflow_agent_provider.operators._staging import open_area

    staging_area.mount(open_area(s3_staging.root))
    yield s3_staging.root
    staging_area.unmount_all()


def pipeline(root: str, orders_csv: Path, warehouse: sa.Engine) -> dict[str, StageResult]:
    """extract -> validate -> quarantine -> transform -> load, staged under ``root``."""
    run = f"{root}/dag/run"
    extract = extract_sources(
        parse_sources([{"name": "orders", "type": "file", "path": str(orders_csv), "format": "csv"}]),
        dataset_uri=lambda name: f"{run}/extract/{name}",
    )
    validation = validate_dataset(extract.datasets["orders"], dataset="orders", quality_rules=RULES)
    clean = quarantine_dataset(validation, uri_for=lambda name: f"{run}/quarantine/{name}", quality_rules=RULES)
    transform = run_transformations(
        {"orders": clean.datasets["orders"]},
        STEPS,
        output_dataset="per_customer",
        output_uri=f"{run}/transform/per_customer",
    )
    load = load_dataset(
        transform.datasets["per_customer"],
        engine=warehouse,
        target_table="per_customer",
        load_strategy="upsert",
        upsert_key=["customer_id"],
    )
    return {"extract": extract, "validate": validation, "quarantine": clean, "transform": transform, "load": load}


def _portable(ref: DatasetRef) -> tuple[Any, ...]:
    return (ref.row_count, ref.columns, ref.checksum)


class TestEveryStageOnS3:
    def test_results_and_the_warehouse_do_not_depend_on_where_data_was_staged(
        self, s3_root: str, s3_staging: S3Staging, staging_root: str, tmp_path: Path
    ) -> None:
        orders = tmp_path / "orders.csv"
        orders.write_text(ORDERS_CSV)
        results, tables = {}, {}
        for where, root in (("local", staging_root), ("s3", s3_root)):
            engine = sa.create_engine(f"sqlite:///{tmp_path / where}.db")
            results[where] = pipeline(root, orders, engine)
            with engine.connect() as con:
                tables[where] = con.exec_driver_sql("SELECT * FROM per_customer ORDER BY customer_id").fetchall()
            engine.dispose()

        local, s3 = results["local"], results["s3"]
        for stage in ("extract", "quarantine", "transform"):
            assert {n: _portable(r) for n, r in s3[stage].datasets.items()} == {
                n: _portable(r) for n, r in local[stage].datasets.items()
            }, stage
        assert [i.model_dump() for i in s3["validate"].issues] == [i.model_dump() for i in local["validate"].issues]
        assert s3["quarantine"].metrics["rows_quarantined"] == 2
        assert tables["s3"] == tables["local"] == [(1, 2, 17.75)]
        assert s3["load"].metrics["rows_loaded"] == 1
        for result in s3.values():
            assert all(ref.uri.startswith(s3_root + "/dag/run/") for ref in result.datasets.values())
        keys = s3_staging.object_keys()
        assert "airflow-staging/dag/run/extract/orders/part-00000.parquet" in keys
        assert {key.split("/")[4] for key in keys} == {"orders", "orders_quarantine", "per_customer"}

    def test_remote_part_files_are_read_in_place_not_downloaded(self, s3_root: str) -> None:
        writer = staging.DatasetWriter(f"{s3_root}/dag/run/extract/events")
        writer.write(pa.table({"id": [1, 2]}))
        writer.write(pa.table({"id": [3], "note": ["late column"]}))
        ref = writer.finish()

        files = staging.part_files(ref.uri)
        assert [f.rsplit("/", 1)[-1] for f in files] == ["part-00000.parquet", "part-00001.parquet"]
        assert all(f.startswith("s3://") and "@" not in f for f in files)  # DuckDB's path: the bucket, no conn id
        assert (ref.row_count, ref.columns) == (3, {"id": "integer", "note": "string"})
        assert ref.bytes and ref.bytes > 0
        assert staging.read_frame(ref.uri).sort_values("id")["note"].tolist()[-1] == "late column"

    def test_a_retry_restages_from_scratch_in_the_bucket(self, s3_root: str, s3_staging: S3Staging) -> None:
        uri = f"{s3_root}/dag/run/extract/events"
        first = staging.DatasetWriter(uri)
        first.write(pa.table({"id": [1]}))
        first.write(pa.table({"id": [2]}))
        first.finish()
        again = staging.DatasetWriter(uri)
        again.write(pa.table({"id": [7]}))
        ref = again.finish()

        assert ref.row_count == 1
        assert [k.rsplit("/", 1)[-1] for k in s3_staging.object_keys()] == ["part-00000.parquet"]


class TestSchemaRemediationOnS3:
    def test_a_fix_plan_reads_and_stages_in_the_bucket(self, s3_root: str) -> None:
        from airflow_agent_provider.contracts import FixPlan
        from airflow_agent_provider.engines.remediate import apply_fix_plan

        writer = staging.DatasetWriter(f"{s3_root}/dag/run/extract/payments")
        writer.write(pa.table({"uid": [1, 2, 3], "amount": ["10.5", "n/a", "3.25"]}))
        plan = FixPlan.model_validate(
            {
                "actions": [
                    {"action": "rename_column", "column": "uid", "to": "user_id"},
                    {
                        "action": "quarantine_rows",
                        "rule": {"column": "amount", "op": "not_castable", "to_type": "float"},
                        "target": "rejects",
                    },
                    {"action": "cast_column", "column": "amount", "to_type": "float"},
                ]
            }
        )

        result, quarantined = apply_fix_plan(
            writer.finish(),
            plan,
            output_uri=f"{s3_root}/dag/run/remediate/payments",
            quarantine_uri=lambda name: f"{s3_root}/dag/run/remediate/{name}",
        )

        fixed = result.datasets["payments"]
        assert fixed.uri.startswith(s3_root) and quarantined["rejects"].uri.startswith(s3_root)
        assert fixed.columns == {"user_id": "integer", "amount": "float"}
        assert sorted(staging.read_frame(fixed.uri)["amount"]) == [3.25, 10.5]
        assert staging.read_frame(quarantined["rejects"].uri)["amount"].tolist() == ["n/a"]


class TestANewWorkerProcess:
    def test_reads_upstream_data_it_never_opened_in_every_kind_of_duckdb(
        self, s3_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from airflow_agent_provider.operators import _staging

        writer = staging.DatasetWriter(f"{s3_root}/dag/run/extract/orders")
        writer.write(pa.table({"customer_id": [1, 1, 2], "amount": [2.0, 3.0, 4.0]}))
        ref = writer.finish()
        # as on a worker that runs only the later stages: nothing opened yet, the operators' opener installed
        monkeypatch.setattr(staging_area._AREAS, "mounted", {})
        monkeypatch.setattr(staging_area._AREAS, "opener", _staging.opener)
        warehouse = sa.create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")

        loaded = load_dataset(ref, engine=warehouse, target_table="orders", load_strategy="insert")
        monkeypatch.setattr(staging_area._AREAS, "mounted", {})
        transformed = run_transformations(
            {"orders": ref}, STEPS, output_dataset="per_customer", output_uri=f"{s3_root}/dag/run/transform/out"
        )

        assert loaded.metrics["rows_loaded"] == 3
        with warehouse.connect() as con:
            assert con.exec_driver_sql("SELECT sum(amount) FROM orders").scalar() == 9.0
        warehouse.dispose()
        assert sorted(staging.read_frame(transformed.datasets["per_customer"].uri)["revenue"]) == [4.0, 5.0]


class TestRetention:
    def test_a_runs_folders_are_removed_under_every_root_it_used(
        self, s3_root: str, s3_staging: S3Staging, staging_root: str
    ) -> None:
        kept = staging.stage_uri(s3_root, "dag", "other_run", "extract", "events")
        uris = [
            staging.stage_uri(s3_root, "dag", "run/1", "extract", "events"),
            staging.stage_uri(staging_root, "dag", "run/1", "transform", "daily"),
            kept,
        ]
        for uri in uris:
            writer = staging.DatasetWriter(uri)
            writer.write(pa.table({"id": [1]}))
            writer.finish()

        folders = staging_retention.run_folders("dag", "run/1", roots=[staging_root], uris=uris)
        expected = [staging_retention.run_folder(root, "dag", "run/1") for root in (s3_root, staging_root)]
        assert folders == sorted(expected)
        assert [staging_retention.remove(folder) for folder in folders] == [True, True]
        assert [staging_retention.remove(folder) for folder in folders] == [False, False]
        assert not Path(staging_retention.run_folder(staging_root, "dag", "run/1")).exists()
        assert {key.split("/")[2] for key in s3_staging.object_keys()} == {"other_run"}

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(None, "delete_on_success", id="default"),
            pytest.param("", "delete_on_success", id="empty"),
            pytest.param(" Keep ", "keep", id="keep"),
        ],
    )
    def test_retention_values(self, value: str | None, expected: str) -> None:
        assert staging_retention.parse_retention(value) == expected

    def test_an_unknown_retention_value_is_refused(self) -> None:
        with pytest.raises(ValueError, match="staging_retention must be one of delete_on_success, keep, got 'forever'"):
            staging_retention.parse_retention("forever")


class TestAreas:
    def test_a_remote_uri_without_an_opened_area_names_the_uri(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(staging_area._AREAS, "mounted", {})
        monkeypatch.setattr(staging_area._AREAS, "opener", None)
        with pytest.raises(staging.StagingError, match=r"staged data at s3://c@b/x/y: no filesystem is open"):
            staging.part_files("s3://c@b/x/y")
