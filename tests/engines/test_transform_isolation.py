"""Escapes from a transform step now that DuckDB may reach the staged folders (``allowed_directories``).

The inputs are native ``read_parquet`` views, so their folders, the output folder and DuckDB's spill
folder stay reachable after external access is switched off. A step must still be unable to read
any file by path (even inside those folders), to write into them, or to change the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from airflow_agent_provider.contracts import DatasetRef, parse_transformations
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.transform import isolated_connection, run_transformations
from airflow_agent_provider.exceptions import TransformError

EVENTS = pd.DataFrame({"user_id": [1, 2, 2], "amount": [40.0, 5.0, 15.0]})
SECRET = pd.DataFrame({"token": ["hunter2"]})


@pytest.fixture
def stage(staging_root: str) -> Callable[[str, pd.DataFrame], DatasetRef]:
    def _stage(path: str, frame: pd.DataFrame) -> DatasetRef:
        writer = staging.DatasetWriter(f"{staging_root}/{path}")
        writer.write(frame)
        return writer.finish()

    return _stage


@pytest.fixture
def events(stage: Callable[[str, pd.DataFrame], DatasetRef]) -> DatasetRef:
    return stage("dag/run-1/extract/events", EVENTS)


@pytest.fixture
def other_run(stage: Callable[[str, pd.DataFrame], DatasetRef]) -> str:
    """Another run's dataset under the same staging root, the same task folder's sibling."""
    return staging.part_files(stage("dag/run-0/extract/events", SECRET).uri)[0]


@pytest.fixture
def out(staging_root: str) -> str:
    return f"{staging_root}/dag/run-1/transform/result"


def run(events: DatasetRef, out: str, sql: str) -> Any:
    step = parse_transformations([{"name": "sneaky", "type": "sql", "sql": sql}])
    return run_transformations({"events": events}, step, output_dataset="result", output_uri=out)


ESCAPES = [
    pytest.param("SELECT * FROM read_parquet('{own}')", id="own-input-by-path"),
    pytest.param("SELECT * FROM '{own}'", id="own-input-as-table-name"),
    pytest.param('SELECT * FROM "{own}"', id="own-input-as-quoted-identifier"),
    pytest.param("SELECT * FROM read_parquet('{input_folder}/*.parquet')", id="glob-in-input-folder"),
    pytest.param("SELECT * FROM read_parquet('{other}')", id="other-run"),
    pytest.param("SELECT * FROM read_parquet('{input_folder}/../../../run-0/extract/events/*.parquet')", id="dotdot"),
    pytest.param("SELECT * FROM read_parquet('{out}/*.parquet')", id="output-folder"),
    pytest.param("SELECT * FROM glob('{input_folder}/*')", id="glob-function"),
    pytest.param("SELECT * FROM read_blob('{own}')", id="read-blob"),
    pytest.param("SELECT * FROM parquet_metadata('{own}')", id="parquet-metadata"),
    pytest.param("SELECT * FROM query_table('{own}')", id="query-table"),
    pytest.param("SELECT * FROM events WHERE user_id IN (SELECT user_id FROM '{own}')", id="nested-subquery"),
    pytest.param("SELECT * FROM events, LATERAL (SELECT * FROM read_parquet('{own}'))", id="lateral"),
    pytest.param("SELECT * FROM events UNION ALL SELECT * FROM '{own}'", id="union"),
    pytest.param("SUMMARIZE '{own}'", id="summarize-file"),
    pytest.param("SELECT * FROM (DESCRIBE '{own}')", id="describe-file"),
    pytest.param("SELECT * FROM duckdb_settings()", id="settings-table-function"),
    pytest.param("SELECT * FROM information_schema.tables", id="catalog-view"),
    pytest.param("SELECT getenv('HOME') AS user_id, 0.0 AS amount", id="environment"),
    pytest.param("SELECT current_setting('allowed_directories') AS user_id, 0.0 AS amount", id="settings"),
    pytest.param(
        "WITH a AS (FROM '{own}'), \"{own}\" AS (SELECT 1 AS x) SELECT * FROM a", id="cte-named-like-the-file"
    ),
    pytest.param("SELECT * FROM (WITH \"{own}\" AS (SELECT 1) SELECT 1), '{own}'", id="cte-out-of-scope"),
]


RECURSIVE = (
    "WITH RECURSIVE n(user_id) AS (SELECT 1 UNION ALL SELECT user_id + 1 FROM n WHERE user_id < 3) "
    "SELECT user_id, 0.0 AS amount FROM n"
)


class TestAStepCannotReadFilesInTheAllowedFolders:
    @pytest.mark.parametrize("template", ESCAPES)
    def test_refused_before_it_runs(self, events: DatasetRef, other_run: str, out: str, template: str) -> None:
        own = staging.part_files(events.uri)[0]
        sql = template.format(own=own, input_folder=Path(own).parent, other=other_run, out=out)

        with pytest.raises(TransformError, match="not allowed") as caught:
            run(events, out, sql)

        assert caught.value.transformation == "sneaky"

    @pytest.mark.parametrize(
        "sql",
        [
            pytest.param("SELECT r.range AS user_id, 0.0 AS amount FROM range(3) AS r", id="range"),
            pytest.param("SELECT unnest([1, 2]) AS user_id, 1.0 AS amount", id="unnest"),
            pytest.param("SELECT * FROM generate_series(1, 2) AS g(user_id), (VALUES (1.0)) AS v(amount)", id="values"),
            pytest.param("WITH e AS (SELECT * FROM events) SELECT * FROM e", id="cte"),
            pytest.param(RECURSIVE, id="recursive-cte"),
            pytest.param("FROM main.events", id="qualified-input"),
        ],
    )
    def test_queries_that_read_only_tables_still_run(self, events: DatasetRef, out: str, sql: str) -> None:
        result = run(events, out, sql)

        assert result.dataset().row_count >= 2


class TestAStepCannotWriteIntoTheAllowedFolders:
    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("COPY (SELECT 1 AS x) TO '{out}/part-00001.parquet'", id="copy-into-output"),
            pytest.param("COPY (SELECT 1 AS x) TO '{input_folder}/part-00001.parquet'", id="copy-into-input"),
            pytest.param("ATTACH '{out}/side.db' AS side", id="attach-in-output"),
            pytest.param("EXPORT DATABASE '{out}'", id="export"),
            pytest.param("SELECT * FROM query('COPY (SELECT 1) TO ''{out}/q.csv''')", id="copy-inside-query"),
        ],
    )
    def test_refused_and_nothing_written(self, events: DatasetRef, out: str, template: str) -> None:
        input_folder = Path(staging.part_files(events.uri)[0]).parent
        sql = template.format(out=out, input_folder=input_folder)

        with pytest.raises(TransformError):
            run(events, out, sql)

        assert sorted(p.name for p in input_folder.iterdir()) == ["part-00000.parquet"]
        assert not Path(out).exists() or not any(Path(out).iterdir())


class TestTheConnectionItself:
    """The second lock: what DuckDB refuses even if a query got past the step checks."""

    @pytest.fixture
    def con(self, events: DatasetRef, out: str) -> Any:
        con = isolated_connection({"events": events}, writable=[out])
        yield con
        con.close()

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("SELECT * FROM read_parquet('{other}')", id="other-run"),
            pytest.param("SELECT * FROM read_parquet('{root}/**/*.parquet')", id="whole-root"),
            pytest.param("SELECT * FROM read_parquet('{input_folder}/../../../run-0/extract/events/*')", id="dotdot"),
            pytest.param("COPY (SELECT 1 AS x) TO '{root}/leak.parquet'", id="copy-outside"),
            pytest.param("ATTACH '{root}/side.db' AS side", id="attach-outside"),
            pytest.param("SET allowed_directories = ['/']", id="widen"),
            pytest.param("SET enable_external_access = true", id="unlock"),
            pytest.param("RESET lock_configuration", id="reset-lock"),
        ],
    )
    def test_refuses_anything_outside_the_run_folders(
        self, con: Any, staging_root: str, other_run: str, events: DatasetRef, template: str
    ) -> None:
        input_folder = Path(staging.part_files(events.uri)[0]).parent
        sql = template.format(other=other_run, root=staging_root, input_folder=input_folder)

        with pytest.raises(duckdb.Error, match=r"disabled|locked|Permission"):
            con.execute(sql).fetchall()

        assert not (Path(staging_root) / "leak.parquet").exists() and not (Path(staging_root) / "side.db").exists()
        assert con.execute("SELECT sum(amount) FROM events").fetchall() == [(60.0,)]

    def test_python_variables_are_not_tables(self, con: Any) -> None:
        secret_frame = SECRET  # noqa: F841 - DuckDB's Python replacement scan would find a local by name

        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM secret_frame").fetchall()


class TestTheStagedOutput:
    def test_is_part_files_that_describe_reads_the_same(self, events: DatasetRef, out: str) -> None:
        result = run(events, out, "SELECT user_id, sum(amount) AS total, count(*) AS n FROM events GROUP BY 1")

        ref = result.dataset()
        assert [Path(f).name for f in staging.part_files(out)] == ["part-00000.parquet"]
        assert ref == staging.describe(out)
        assert ref.row_count == result.metrics["rows_after"] == 2
        assert ref.columns == {"user_id": "integer", "total": "float", "n": "integer"}

    def test_128_bit_sums_are_staged_as_decimals_not_doubles(self, events: DatasetRef, out: str) -> None:
        big = "SELECT sum(user_id) AS s, 99999999999999999999999999999999999999::HUGEINT AS h FROM events"

        result = run(events, out, big)

        con = staging.connect()
        try:
            types = staging.columns_of(con, staging.scan_sql(out))
            values = con.execute(f"SELECT s::VARCHAR, h::VARCHAR FROM {staging.scan_sql(out)}").fetchall()
        finally:
            con.close()
        assert types == {"s": "DECIMAL(38,0)", "h": "DECIMAL(38,0)"}
        assert values == [("5", "99999999999999999999999999999999999999")]
        assert result.dataset().columns == {"s": "float", "h": "float"}

    def test_a_rerun_replaces_the_earlier_output(self, events: DatasetRef, out: str) -> None:
        run(events, out, "SELECT * FROM events")
        (Path(out) / "part-00007.parquet").write_bytes(b"left by a crashed try")

        result = run(events, out, "SELECT * FROM events WHERE user_id = 2")

        assert [Path(f).name for f in staging.part_files(out)] == ["part-00000.parquet"]
        assert result.dataset().row_count == 2

    def test_a_remote_output_goes_through_fsspec(self, events: DatasetRef, monkeypatch: pytest.MonkeyPatch) -> None:
        import fsspec

        from airflow_agent_provider.engines.staging import area as staging_area

        monkeypatch.setattr(staging_area._AREAS, "mounted", {})  # the operators hand remote roots over as areas
        fs = fsspec.filesystem("memory")
        staging_area.mount(staging_area.StagingArea("memory://transform-tests", fs, "/transform-tests"))
        uri = "memory://transform-tests/result"

        result = run(events, uri, "SELECT user_id, amount * 2 AS doubled FROM events")

        assert result.dataset().uri == uri and result.dataset().row_count == 3
        doubled = sorted(row["doubled"] for batch in staging.iter_batches(uri) for row in batch.to_pylist())
        assert doubled == [10.0, 30.0, 80.0]
