"""The transform engine over real staged Parquet in a real (isolated) DuckDB."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_agent_provider.contracts import DatasetRef, Transformation, parse_transformations
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.transform import isolated_connection, run_transformations
from airflow_agent_provider.exceptions import TransformError

HELPERS = "tests.engines.transforms_for_tests"

EVENTS = pd.DataFrame(
    {
        "user_id": [1, 1, 2, 2, 2, 3, 9],
        "amount": [40.0, 70.0, 5.0, 15.0, 10.0, 100.0, 1.0],
        "kind": ["buy", "buy", "buy", "view", "buy", "buy", "buy"],
    }
)
USERS = pd.DataFrame({"user_id": [1, 2, 3], "country": ["FR", "DE", "FR"]})


@pytest.fixture
def stage(staging_root: str) -> Callable[..., DatasetRef]:
    """Stage frames (one part file each) as a dataset under the staging root."""

    def _stage(name: str, *chunks: pd.DataFrame | pa.Table) -> DatasetRef:
        writer = staging.DatasetWriter(f"{staging_root}/inputs/{name}")
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish()

    return _stage


@pytest.fixture
def shop(stage: Callable[..., DatasetRef]) -> dict[str, DatasetRef]:
    return {"events": stage("events", EVENTS), "users": stage("users", USERS)}


@pytest.fixture
def out(staging_root: str) -> str:
    return f"{staging_root}/run/transform/result"


def steps(*items: dict[str, Any]) -> list[Transformation]:
    return parse_transformations(list(items))


def rows(ref: DatasetRef, order: str) -> list[tuple[Any, ...]]:
    con = staging.connect()
    try:
        return con.execute(f"SELECT * FROM {staging.scan_sql(ref.uri)} ORDER BY {order}").fetchall()
    finally:
        con.close()


ENRICH = {
    "name": "enriched",
    "type": "sql",
    "sql": "SELECT e.user_id, e.amount, u.country FROM events e JOIN users u USING (user_id) WHERE e.kind = 'buy'",
}
TOTALS = {
    "name": "totals",
    "type": "sql",
    "sql": "SELECT user_id, country, sum(amount) AS total, count(*) AS orders FROM enriched GROUP BY ALL",
}


class TestSqlTransformations:
    def test_chained_steps_join_two_inputs_and_aggregate(self, shop, out):
        result = run_transformations(shop, steps(ENRICH, TOTALS), output_dataset="user_totals", output_uri=out)

        ref = result.dataset("user_totals")
        assert ref.uri == out
        assert rows(ref, "user_id") == [(1, "FR", 110.0, 2), (2, "DE", 15.0, 2), (3, "FR", 100.0, 1)]
        assert ref.columns == {"user_id": "integer", "country": "string", "total": "float", "orders": "integer"}
        assert result.stage == "transform"
        assert result.status == "success"

    def test_metrics_count_rows_before_and_after(self, shop, out):
        result = run_transformations(shop, steps(ENRICH, TOTALS), output_dataset="user_totals", output_uri=out)

        metrics = result.metrics
        assert metrics["transformations_applied"] == ["enriched", "totals"]
        assert metrics["rows_before"] == 10
        assert metrics["rows_after"] == 3
        assert metrics["rows_filtered"] == 7
        assert metrics["output_location"] == out
        details = metrics["transformation_details"]
        assert list(details) == ["enriched", "totals"]
        assert {d["status"] for d in details.values()} == {"success"}
        assert details["enriched"]["rows"] is None  # a lazy view, never computed on its own
        assert details["totals"]["rows"] == 3

    def test_rows_filtered_is_never_negative_when_a_join_multiplies_rows(self, shop, out):
        fan_out = {"name": "pairs", "type": "sql", "sql": "SELECT * FROM events a JOIN events b USING (user_id)"}

        result = run_transformations(shop, steps(fan_out), output_dataset="pairs", output_uri=out)

        assert result.metrics["rows_after"] == 4 + 9 + 1 + 1
        assert result.metrics["rows_filtered"] == 0

    def test_step_read_twice_is_computed_once(self, shop, out):
        noisy = {"name": "noisy", "type": "sql", "sql": "SELECT user_id, random() AS r FROM events"}
        left = {"name": "lefts", "type": "sql", "sql": "SELECT * FROM noisy"}
        joined = {"name": "matched", "type": "sql", "sql": "SELECT count(*) AS n FROM lefts JOIN noisy USING (r)"}

        result = run_transformations(shop, steps(noisy, left, joined), output_dataset="matched", output_uri=out)

        assert rows(result.dataset(), "n") == [(7,)]  # the same random values on both sides
        assert result.metrics["transformation_details"]["noisy"]["rows"] == 7

    def test_semicolon_and_trailing_comment_are_fine(self, shop, out):
        step = {"name": "fr", "type": "sql", "sql": "SELECT * FROM users WHERE country = 'FR'; -- French users\n"}

        result = run_transformations(shop, steps(step), output_dataset="fr", output_uri=out)

        assert rows(result.dataset(), "user_id") == [(1, "FR"), (3, "FR")]

    def test_empty_result_keeps_its_columns(self, shop, out):
        none = {"name": "none", "type": "sql", "sql": "SELECT user_id, amount FROM events WHERE amount < 0"}

        result = run_transformations(shop, steps(none), output_dataset="none", output_uri=out)

        assert result.dataset().row_count == 0
        assert result.dataset().columns == {"user_id": "integer", "amount": "float"}
        assert result.metrics["rows_filtered"] == 10

    def test_parts_with_different_types_read_as_validation_sees_them(self, stage, out):
        first = pd.DataFrame({"code": [1, 2], "note": [None, None]})
        mixed = stage("mixed", first, pd.DataFrame({"code": [2.5], "note": ["late"], "extra": [True]}))
        halves = {"name": "halves", "type": "sql", "sql": "SELECT code / 2 AS half, note, extra FROM mixed"}

        result = run_transformations({"mixed": mixed}, steps(halves), output_dataset="halves", output_uri=out)

        assert rows(result.dataset(), "half") == [(0.5, None, None), (1.0, None, None), (1.25, "late", True)]

    def test_keep_intermediate_stages_that_step_too(self, shop, out, staging_root):
        kept_uri = f"{staging_root}/run/transform/enriched"

        result = run_transformations(
            shop,
            steps(ENRICH, TOTALS),
            output_dataset="user_totals",
            output_uri=out,
            keep_intermediate={"enriched": kept_uri},
        )

        assert set(result.datasets) == {"user_totals", "enriched"}
        assert result.datasets["enriched"].uri == kept_uri
        assert result.datasets["enriched"].row_count == 5
        assert result.metrics["transformation_details"]["enriched"]["rows"] == 5
        assert result.dataset("user_totals").row_count == 3

    def test_log_gets_a_line_per_step(self, shop, out):
        lines: list[str] = []

        run_transformations(shop, steps(ENRICH, TOTALS), output_dataset="t", output_uri=out, log=lines.append)

        assert [line.split()[1] for line in lines[:2]] == ["enriched", "totals"]


class TestPythonTransformations:
    def test_python_step_between_sql_steps(self, shop, out):
        band = {"name": "banded", "type": "python", "callable": f"{HELPERS}:add_spend_band"}
        high = {"name": "high", "type": "sql", "sql": "SELECT user_id, total FROM banded WHERE band = 'high'"}

        result = run_transformations(shop, steps(ENRICH, TOTALS, band, high), output_dataset="high", output_uri=out)

        assert rows(result.dataset(), "user_id") == [(1, 110.0), (3, 100.0)]
        assert result.metrics["transformation_details"]["banded"]["rows"] == 3

    def test_dotted_path_without_colon(self, shop, out):
        double = {"name": "doubled", "type": "python", "callable": f"{HELPERS}.double_amount"}
        only_events = {"events": shop["events"]}

        result = run_transformations(only_events, steps(double), output_dataset="doubled", output_uri=out)

        assert sorted(r[1] for r in rows(result.dataset(), "user_id")) == sorted(EVENTS["amount"] * 2)

    def test_attribute_path_after_colon(self, shop, out):
        same = {"name": "same", "type": "python", "callable": f"{HELPERS}:Namespace.identity"}

        result = run_transformations({"users": shop["users"]}, steps(same), output_dataset="same", output_uri=out)

        assert rows(result.dataset(), "user_id") == [(1, "FR"), (2, "DE"), (3, "FR")]

    def test_first_step_with_several_inputs_gets_a_dict(self, shop, out):
        count = {"name": "counts", "type": "python", "callable": f"{HELPERS}:count_frames"}

        result = run_transformations(shop, steps(count), output_dataset="counts", output_uri=out)

        assert rows(result.dataset(), "dataset") == [("events", 7), ("users", 3)]

    def test_declared_inputs_choose_the_frames(self, shop, out):
        count = {
            "name": "counts",
            "type": "python",
            "callable": f"{HELPERS}:count_frames",
            "inputs": ["enriched", "users"],
        }

        result = run_transformations(shop, steps(ENRICH, count), output_dataset="counts", output_uri=out)

        assert rows(result.dataset(), "dataset") == [("enriched", 5), ("users", 3)]

    def test_callable_must_return_a_dataframe(self, shop, out):
        bad = {"name": "listy", "type": "python", "callable": f"{HELPERS}:not_a_frame"}

        with pytest.raises(TypeError, match=r"'listy'.*returned list, expected a pandas DataFrame"):
            run_transformations({"users": shop["users"]}, steps(bad), output_dataset="x", output_uri=out)

    def test_callable_failure_names_the_step(self, shop, out):
        boom = {"name": "boom", "type": "python", "callable": f"{HELPERS}:explode"}

        with pytest.raises(TransformError, match="cannot handle 3 rows") as caught:
            run_transformations({"users": shop["users"]}, steps(boom), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "boom"
        assert isinstance(caught.value.__cause__, RuntimeError)

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param(f"{HELPERS}:no_such_function", id="missing-function"),
            pytest.param("tests.engines.no_such_module:f", id="missing-module"),
            pytest.param("nodots", id="not-a-path"),
        ],
    )
    def test_unresolvable_callable_is_a_transform_error(self, shop, out, path):
        step = {"name": "lost", "type": "python", "callable": path}

        with pytest.raises(TransformError) as caught:
            run_transformations({"users": shop["users"]}, steps(step), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "lost"


class TestErrors:
    def test_unknown_column_names_the_step_and_carries_duckdbs_message(self, shop, out):
        broken = {"name": "totals", "type": "sql", "sql": "SELECT user_id, sum(amout) FROM enriched GROUP BY 1"}

        with pytest.raises(TransformError, match="amout") as caught:
            run_transformations(shop, steps(ENRICH, broken), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "totals"
        assert isinstance(caught.value.__cause__, duckdb.Error)

    def test_syntax_error_names_the_step(self, shop, out):
        broken = {"name": "garbled", "type": "sql", "sql": "SELEC * FROM users"}

        with pytest.raises(TransformError, match="syntax error") as caught:
            run_transformations(shop, steps(broken), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "garbled"

    def test_error_at_run_time_names_the_step_being_staged(self, shop, out):
        broken = {"name": "strict", "type": "sql", "sql": "SELECT CAST(country AS INTEGER) AS n FROM users"}

        with pytest.raises(TransformError, match="Could not convert") as caught:
            run_transformations(shop, steps(broken), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "strict"

    @pytest.mark.parametrize(
        "sql",
        [
            pytest.param("SELECT 1; SELECT 2", id="two-queries"),
            pytest.param("DROP TABLE users", id="drop"),
            pytest.param("CREATE TABLE t AS SELECT 1", id="create"),
        ],
    )
    def test_only_one_select_per_step(self, shop, out, sql):
        step = {"name": "multi", "type": "sql", "sql": sql}

        with pytest.raises(TransformError, match="single SELECT"):
            run_transformations(shop, steps(step), output_dataset="x", output_uri=out)

    @pytest.mark.parametrize(
        ("items", "keep", "message"),
        [
            pytest.param([ENRICH, ENRICH], None, "already used", id="duplicate-step"),
            pytest.param([{**ENRICH, "name": "Users"}], None, "already used", id="shadows-input"),
            pytest.param([ENRICH], {"nope": "/tmp/x"}, "unknown transformations: nope", id="keep-unknown"),
            pytest.param([{**TOTALS, "inputs": ["enriched"]}], None, "reads enriched", id="input-not-yet"),
        ],
    )
    def test_bad_arguments_are_value_errors(self, shop, out, items, keep, message):
        with pytest.raises(ValueError, match=message):
            run_transformations(shop, steps(*items), output_dataset="x", output_uri=out, keep_intermediate=keep)

    def test_no_inputs_is_a_value_error(self, out):
        with pytest.raises(ValueError, match="at least one input"):
            run_transformations({}, steps(ENRICH), output_dataset="x", output_uri=out)


class TestIsolation:
    @pytest.fixture
    def secret(self, tmp_path: Path) -> Path:
        path = tmp_path / "secret.csv"
        path.write_text("token\nhunter2\n")
        return path

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("SELECT * FROM read_csv('{secret}')", id="read_csv"),
            pytest.param("SELECT * FROM read_text('{secret}')", id="read_text"),
            pytest.param("SELECT * FROM glob('{folder}/*')", id="glob"),
            pytest.param("SELECT * FROM read_parquet('{staged}')", id="staged-parquet-by-path"),
            pytest.param("COPY (SELECT 1) TO '{folder}/leak.csv'", id="copy"),
            pytest.param("ATTACH '{folder}/other.db' AS other", id="attach"),
            pytest.param("INSTALL httpfs", id="install"),
            pytest.param("SET enable_external_access = true", id="unlock"),
        ],
    )
    def test_sql_step_cannot_touch_files(self, shop, out, secret, template):
        staged = staging.part_files(shop["users"].uri)[0]
        sql = template.format(secret=secret, folder=secret.parent, staged=staged)

        with pytest.raises(TransformError) as caught:
            run_transformations(
                shop, steps({"name": "sneaky", "type": "sql", "sql": sql}), output_dataset="x", output_uri=out
            )

        assert caught.value.transformation == "sneaky"
        assert not (secret.parent / "leak.csv").exists()
        assert not (secret.parent / "other.db").exists()

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param("SELECT * FROM read_csv('{secret}')", id="read_csv"),
            pytest.param("COPY (SELECT 1) TO '{folder}/leak.csv'", id="copy"),
            pytest.param("ATTACH '{folder}/other.db' AS other", id="attach"),
            pytest.param("INSTALL httpfs", id="install"),
            pytest.param("LOAD httpfs", id="load"),
            pytest.param("SET enable_external_access = true", id="unlock"),
        ],
    )
    def test_isolated_connection_refuses_file_access_itself(self, shop, secret, template):
        con = isolated_connection(shop)
        try:
            with pytest.raises(duckdb.Error, match=r"disabled|locked"):
                con.execute(template.format(secret=secret, folder=secret.parent)).fetchall()
            assert con.execute("SELECT count(*) FROM users").fetchall() == [(3,)]
        finally:
            con.close()
        assert not (secret.parent / "leak.csv").exists()


DESCRIBED = {"name": "big_spenders", "type": "sql", "description": "users who spent more than 50 on purchases"}
WRITTEN = "SELECT user_id, sum(amount) AS spent FROM events WHERE kind = 'buy' GROUP BY 1 HAVING sum(amount) > 50"


class TestDescribedTransformations:
    def test_sql_comes_from_the_writer_with_the_visible_schemas(self, shop, out):
        calls: list[tuple[Transformation, Mapping[str, Mapping[str, str]]]] = []

        def write_sql(transformation: Transformation, schemas: Mapping[str, Mapping[str, str]]) -> str:
            calls.append((transformation, schemas))
            return WRITTEN

        result = run_transformations(shop, steps(DESCRIBED), output_dataset="big", output_uri=out, write_sql=write_sql)

        assert rows(result.dataset(), "user_id") == [(1, 110.0), (3, 100.0)]
        [(transformation, schemas)] = calls
        assert transformation.name == "big_spenders"
        assert schemas == {
            "events": {"user_id": "BIGINT", "amount": "DOUBLE", "kind": "VARCHAR"},
            "users": {"user_id": "BIGINT", "country": "VARCHAR"},
        }

    def test_writer_sees_earlier_steps_as_tables(self, shop, out):
        seen: list[str] = []

        def write_sql(transformation: Transformation, schemas: Mapping[str, Mapping[str, str]]) -> str:
            seen.extend(schemas)
            return "SELECT * FROM enriched WHERE country = 'DE'"

        described = {"name": "german", "type": "sql", "description": "orders from Germany"}
        result = run_transformations(
            shop, steps(ENRICH, described), output_dataset="de", output_uri=out, write_sql=write_sql
        )

        assert seen == ["events", "users", "enriched"]
        assert rows(result.dataset(), "amount") == [(2, 5.0, "DE"), (2, 10.0, "DE")]

    def test_written_sql_is_isolated_too(self, shop, out, tmp_path):
        (tmp_path / "secret.csv").write_text("token\nhunter2\n")

        def write_sql(transformation: Transformation, schemas: Mapping[str, Mapping[str, str]]) -> str:
            return f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')"

        with pytest.raises(TransformError, match=r"read_csv\(\) is not allowed") as caught:
            run_transformations(shop, steps(DESCRIBED), output_dataset="x", output_uri=out, write_sql=write_sql)

        assert caught.value.transformation == "big_spenders"

    def test_without_a_writer_the_error_asks_for_the_claude_connection(self, shop, out):
        with pytest.raises(TransformError, match="Claude connection") as caught:
            run_transformations(shop, steps(DESCRIBED), output_dataset="x", output_uri=out)

        assert caught.value.transformation == "big_spenders"

    def test_writer_failure_is_a_transform_error(self, shop, out):
        def write_sql(transformation: Transformation, schemas: Mapping[str, Mapping[str, str]]) -> str:
            raise ConnectionError("Claude is unreachable")

        with pytest.raises(TransformError, match="unreachable") as caught:
            run_transformations(shop, steps(DESCRIBED), output_dataset="x", output_uri=out, write_sql=write_sql)

        assert isinstance(caught.value.__cause__, ConnectionError)

    def test_given_sql_wins_over_the_description(self, shop, out):
        def write_sql(transformation: Transformation, schemas: Mapping[str, Mapping[str, str]]) -> str:
            raise AssertionError("must not be called")

        both = {**DESCRIBED, "sql": "SELECT count(*) AS n FROM users"}
        result = run_transformations(shop, steps(both), output_dataset="n", output_uri=out, write_sql=write_sql)

        assert rows(result.dataset(), "n") == [(3,)]


class TestScale:
    def test_two_million_row_aggregate(self, stage, out):
        n, chunk = 2_000_000, 500_000
        parts = []
        for start in range(0, n, chunk):
            ids = np.arange(start, start + chunk, dtype=np.int64)
            parts.append(pa.table({"id": ids, "user_id": ids % 1000, "amount": (ids % 7).astype(np.float64)}))
        big = stage("big", *parts)
        agg = {
            "name": "per_user",
            "type": "sql",
            "sql": "SELECT user_id, count(*) AS n, sum(amount) AS total, max(id) AS last_id FROM big GROUP BY user_id",
        }

        clock = time.monotonic()
        result = run_transformations({"big": big}, steps(agg), output_dataset="per_user", output_uri=out)
        elapsed = time.monotonic() - clock

        ids = np.arange(n, dtype=np.int64)
        expected_total = pd.Series(ids % 7, dtype="float64").groupby(ids % 1000).sum()
        got = rows(result.dataset(), "user_id")
        assert len(got) == 1000
        assert all(r[1] == 2000 for r in got)
        assert [r[2] for r in got] == expected_total.tolist()
        assert got[0][3] == n - 1000 and got[-1][3] == n - 1
        assert result.metrics["rows_before"] == n
        assert result.metrics["rows_after"] == 1000
        assert elapsed < 30
