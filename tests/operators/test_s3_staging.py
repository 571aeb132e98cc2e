"""The operators on object-store staging in moto's S3: a real Airflow run, retention, and bad staging roots.

The staging root is ``[agent_provider] staging_root = s3://s3_staging@<bucket>/airflow-staging``
(set as ``AIRFLOW__AGENT_PROVIDER__STAGING_ROOT``), credentials only in the ``s3_staging``
connection. A bad root — an unknown connection, a missing bucket, refused credentials — fails the
first task that touches staging, for good, with the root and the cause and no secret in the error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_agent_provider.engines.staging import retention as staging_retention
from airflow_agent_provider.operators import ExtractOperator, StageFailed
from tests.objectstore import Keys, MotoS3, S3Staging
from tests.process._procs import wait_until
from tests.support.dags import run_dag, task_states, xcom
from tests.support.operators import Sources, direct_context

STAGES = ["extract", "validate", "transform", "load", "report"]


@pytest.fixture
def s3_configured(s3_staging: S3Staging, monkeypatch: pytest.MonkeyPatch) -> S3Staging:
    """``[agent_provider] staging_root`` in the test bucket; the local default root must stay unused."""
    monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", s3_staging.root)
    return s3_staging


def _pipeline_run(connections: Sources, tmp_path: Path) -> Any:
    return run_dag("op_pipeline", conf=connections.conf(day="2026-11-09", report_path=str(tmp_path / "report.json")))


def _local_run_folder(run: Any) -> Path:
    import os

    from airflow_agent_provider.settings import OPTIONS

    env, default = OPTIONS["staging_root"]  # the local root the run would use without the s3 setting
    local_root = (env and os.environ.get(env)) or default()
    return Path(staging_retention.run_folder(local_root, run.dag_id, run.run_id))


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
class TestPipelineOnS3:
    def test_every_stage_stages_in_the_bucket_and_a_successful_run_leaves_nothing_behind(
        self, connections: Sources, s3_configured: S3Staging, tmp_path: Path
    ) -> None:
        run = _pipeline_run(connections, tmp_path)

        assert task_states(run) == dict.fromkeys(STAGES, "success")
        uris = [ref["uri"] for task in ("extract", "transform") for ref in xcom(run, task)["datasets"].values()]
        assert len(uris) == 4 and all(uri.startswith(s3_configured.root + "/op_pipeline/") for uri in uris)
        assert xcom(run, "load")["metrics"]["rows_loaded"] == 2
        assert xcom(run, "report")["status"] == "success"
        # delete_on_success (the default) removes the run's data, in the background
        wait_until(lambda: s3_configured.object_keys() == [], 30, "the run's staged data to be removed")
        assert not _local_run_folder(run).exists()

    def test_keep_retains_every_staged_dataset(
        self, connections: Sources, s3_configured: S3Staging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION", "keep")
        run = _pipeline_run(connections, tmp_path)

        assert task_states(run) == dict.fromkeys(STAGES, "success")
        datasets = {key.split("/")[-2] for key in s3_configured.object_keys()}
        assert datasets == {"orders", "regions", "customers", "region_revenue"}

    def test_a_failed_run_keeps_its_staged_data_for_debugging(
        self, connections: Sources, s3_configured: S3Staging, tmp_path: Path
    ) -> None:
        connections.warehouse_db.mkdir()  # the warehouse path is a folder: the load fails, the rest ran
        run = _pipeline_run(connections, tmp_path)

        assert task_states(run)["load"] == "failed"
        assert {key.split("/")[-2] for key in s3_configured.object_keys()} >= {"orders", "region_revenue"}

    def test_local_staging_is_removed_on_success_too(
        self, connections: Sources, staging_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", staging_root)
        run = _pipeline_run(connections, tmp_path)

        assert task_states(run) == dict.fromkeys(STAGES, "success")
        uri = xcom(run, "extract")["datasets"]["orders"]["uri"]
        assert uri.startswith(staging_root)
        folder = Path(staging_retention.run_folder(staging_root, run.dag_id, run.run_id))
        wait_until(lambda: not folder.exists(), 30, f"{folder} to be removed")
        assert list(Path(staging_root).joinpath("op_pipeline").iterdir()) == []

    def test_retention_decides_inside_the_schedulers_transaction_without_committing_it(
        self, connections: Sources, staging_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.sqlalchemy import prohibit_commit
        from sqlalchemy import select

        from airflow_agent_provider.listeners.retention import folders_to_remove

        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", staging_root)
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION", "keep")
        run = _pipeline_run(connections, tmp_path)
        monkeypatch.delenv("AIRFLOW__AGENT_PROVIDER__STAGING_RETENTION")

        with create_session() as session:  # the scheduler calls listeners under this guard
            dag_run = session.scalars(select(DagRun).where(DagRun.run_id == run.run_id)).one()
            with prohibit_commit(session):
                folders = folders_to_remove(dag_run, dag_run.dag_id, dag_run.run_id)
            assert dag_run.state == "success"  # still attached and usable by the scheduler
        assert folders == [staging_retention.run_folder(staging_root, run.dag_id, run.run_id)]
        assert Path(folders[0], "extract", "orders").is_dir()  # deciding removed nothing

    def test_a_bad_staging_root_fails_the_first_task_that_stages(
        self, connections: Sources, s3_staging: S3Staging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIRFLOW__AGENT_PROVIDER__STAGING_ROOT", f"s3://no_such_conn@{s3_staging.bucket}/x")
        run = _pipeline_run(connections, tmp_path)

        states = task_states(run)
        assert states["extract"] == "failed"
        assert {states[t] for t in ("validate", "transform", "load")} == {"upstream_failed"}


def _extract_to(root: str, connections: Sources) -> dict[str, Any]:
    source = {"name": "regions", "type": "file", "path": str(connections.regions_csv)}
    return ExtractOperator(task_id="extract", sources=[source], staging_root=root).execute(direct_context("extract"))


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, server: MotoS3, keys: Keys) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(server.connection(keys)))


class TestBadStagingRoot:
    def test_extract_stages_in_s3_when_the_root_is_good(self, connections: Sources, s3_staging: S3Staging) -> None:
        result = _extract_to(s3_staging.root, connections)

        assert result["datasets"]["regions"]["uri"].startswith(s3_staging.root + "/op_direct/")
        assert [key.split("/")[-2:] for key in s3_staging.object_keys()] == [["regions", "part-00000.parquet"]]

    def test_unknown_connection(self, connections: Sources, s3_staging: S3Staging) -> None:
        root = f"s3://no_such_conn@{s3_staging.bucket}/airflow-staging"
        with pytest.raises(StageFailed, match=rf"staging root {root}: connection 'no_such_conn' is not defined"):
            _extract_to(root, connections)

    def test_missing_bucket(self, connections: Sources, s3_staging: S3Staging) -> None:
        root = "s3://s3_staging@no-such-bucket-here/airflow-staging"
        with pytest.raises(StageFailed, match=rf"staging root {root}: bucket 'no-such-bucket-here' does not exist"):
            _extract_to(root, connections)

    @pytest.mark.parametrize(
        "who",
        [pytest.param("wrong_secret", id="wrong-secret-key"), pytest.param("outsider", id="no-s3-permission")],
    )
    def test_refused_credentials(
        self, connections: Sources, s3_staging: S3Staging, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, who: str
    ) -> None:
        keys = moto_s3.outsider if who == "outsider" else Keys(moto_s3.stager.access_key, "wrong-secret-key-0123")
        conn_id = f"s3_{who}"
        _conn(monkeypatch, conn_id, moto_s3, keys)
        root = f"s3://{conn_id}@{s3_staging.bucket}/airflow-staging"
        with pytest.raises(StageFailed, match=rf"staging root {root}: connection '{conn_id}' was refused access") as e:
            _extract_to(root, connections)
        assert keys.secret_key not in str(e.value)
        assert keys.secret_key not in repr(e.value.__cause__)

    def test_a_root_without_a_connection_is_refused(self, connections: Sources, s3_staging: S3Staging) -> None:
        root = f"s3://{s3_staging.bucket}/airflow-staging"
        with pytest.raises(
            StageFailed, match=rf"staging root {root}: names no Airflow connection; write s3://<conn_id>@"
        ):
            _extract_to(root, connections)


def test_the_retention_listener_is_a_plugin_airflow_loads() -> None:
    from airflow import plugins_manager

    plugins = {p["name"]: p for p in plugins_manager.get_plugin_info()}
    assert plugins["agent_provider_staging_retention"]["listeners"] == ["airflow_agent_provider.listeners.retention"]


def test_the_listener_opens_an_object_store_root_no_task_opened_in_its_process(
    s3_configured: S3Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the scheduler no operator ran, so nothing mounted the root: the listener opens it through its connection."""
    from airflow_agent_provider.engines.staging import area
    from airflow_agent_provider.listeners.retention import remove_folders

    folder = staging_retention.run_folder(s3_configured.root, "a_dag", "a_run")
    bucket_folder = folder.split("@", 1)[1]
    s3_configured.server.client().put_object(
        Bucket=s3_configured.bucket, Key=f"{bucket_folder.split('/', 1)[1]}/x/part-0.parquet", Body=b"x"
    )
    assert s3_configured.object_keys() != []
    area.unmount_all()
    monkeypatch.setattr(area._AREAS, "opener", None)  # a process where no operator module was imported

    remove_folders([folder], "a_run")

    assert s3_configured.object_keys() == []
