"""Smoke test of the benchmark harness at a tiny size: it runs end to end, and every contender
writes the same warehouse table as our pipeline (correctness, not timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import baselines, pipeline, warehouse, workload

ROOT = Path(__file__).resolve().parents[2]
VALIDATIONS = ("validate_events", "validate_users", "validate_campaigns")
WAYS = {
    "naive": baselines.naive_pandas,
    "limit": baselines.duckdb_limit,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> workload.Workload:
    return workload.ensure("1k", root=tmp_path_factory.mktemp("bench"))


def _sums(url: str, tiny: workload.Workload, target: workload.Target, staging: Path) -> dict[str, dict[str, Any]]:
    """The table checksum after each contender loaded ``target`` into an empty warehouse."""
    sums = {}
    warehouse.drop_table(url, target.table)
    ours = pipeline.run_pipeline(tiny, url, target, str(staging))
    sums["pipeline"] = warehouse.table_checksum(url, target) | {"xcom_bytes": ours["xcom_bytes"]}
    for way, run in WAYS.items():
        warehouse.drop_table(url, target.table)
        run(tiny, url, target)
        sums[way] = warehouse.table_checksum(url, target)
    if warehouse.kind_of(url) == "sqlite":  # method="multi" writes the same rows; once is enough
        warehouse.drop_table(url, target.table)
        baselines.naive_pandas(tiny, url, target, method="multi")
        sums["naive_multi"] = warehouse.table_checksum(url, target)
    return sums


def _expected_rows(tiny: workload.Workload, target: workload.Target) -> int:
    import duckdb

    con = duckdb.connect()
    for name in ("events", "users", "campaigns"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{tiny.path(name)}')")
    (rows,) = con.execute(f"SELECT count(*) FROM ({target.sql()})").fetchall()[0]
    return int(rows)


@pytest.mark.parametrize("target", [pytest.param(t, id=name) for name, t in workload.TARGETS.items()])
class TestEveryContenderWritesTheSameTable:
    def test_on_sqlite(self, tiny: workload.Workload, target: workload.Target, sqlite_url: str, tmp_path: Path) -> None:
        sums = _sums(sqlite_url, tiny, target, tmp_path / "staging")

        assert {s["sha256"] for s in sums.values()} == {sums["pipeline"]["sha256"]}
        assert {s["rows"] for s in sums.values()} == {_expected_rows(tiny, target)}
        assert all(s["extra_columns"] == [] for s in sums.values())
        assert set(sums["pipeline"]["xcom_bytes"]) == {"extract", *VALIDATIONS, "transform", "load"}

    @pytest.mark.postgres
    def test_on_postgres(self, tiny: workload.Workload, target: workload.Target, pg_url: str, tmp_path: Path) -> None:
        sums = _sums(pg_url, tiny, target, tmp_path / "staging")

        assert {s["sha256"] for s in sums.values()} == {sums["pipeline"]["sha256"]}
        assert {s["rows"] for s in sums.values()} == {_expected_rows(tiny, target)}


class TestDltContender:
    """dlt's load of the fact target is the same table as ours, also after a rerun of each strategy."""

    @pytest.mark.parametrize("strategy", ["insert", "upsert", "replace"])
    def test_on_sqlite(self, tiny: workload.Workload, sqlite_url: str, tmp_path: Path, strategy: str) -> None:
        self.check(tiny, sqlite_url, tmp_path, strategy)

    @pytest.mark.postgres
    @pytest.mark.parametrize("strategy", ["upsert", "replace"])
    def test_on_postgres(self, tiny: workload.Workload, pg_url: str, tmp_path: Path, strategy: str) -> None:
        self.check(tiny, pg_url, tmp_path, strategy)

    def check(self, tiny: workload.Workload, url: str, tmp_path: Path, strategy: str) -> None:
        from benchmarks import contender_dlt

        contender_dlt.configure()
        target = workload.FACT
        warehouse.drop_table(url, target.table)
        baselines.duckdb_limit(tiny, url, target)
        expected = warehouse.table_checksum(url, target)
        warehouse.drop_table(url, target.table)
        warehouse.drop_dlt(url, "public")
        runs = 1 if strategy == "insert" else 2  # upsert and replace: a rerun onto the same rows
        for _ in range(runs):
            contender_dlt.run_dlt(tiny, url, target, strategy, tmp_path / "dlt")
        got = warehouse.table_checksum(url, target)
        assert (got["rows"], got["sha256"]) == (expected["rows"], expected["sha256"])


class TestTableChecksum:
    def test_one_changed_value_changes_the_checksum(self, tiny: workload.Workload, sqlite_url: str) -> None:
        import sqlalchemy as sa

        baselines.duckdb_limit(tiny, sqlite_url, workload.DAILY)
        before = warehouse.table_checksum(sqlite_url, workload.DAILY)
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE user_engagement_daily SET revenue = revenue + 0.01 "
                "WHERE user_id = (SELECT min(user_id) FROM user_engagement_daily)"
            )
        engine.dispose()

        after = warehouse.table_checksum(sqlite_url, workload.DAILY)

        assert after["rows"] == before["rows"]
        assert after["sha256"] != before["sha256"]

    def test_a_table_missing_a_target_column_is_refused(self, sqlite_url: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE fact_events (event_id INTEGER)")
        engine.dispose()

        with pytest.raises(ValueError, match="lacks columns"):
            warehouse.table_checksum(sqlite_url, workload.FACT)


class TestWorkload:
    def test_same_seed_gives_the_same_bytes(self, tiny: workload.Workload, tmp_path: Path) -> None:
        again = workload.ensure("1k", root=tmp_path)

        for source in ("events", "users", "campaigns"):
            assert Path(again.path(source)).read_bytes() == Path(tiny.path(source)).read_bytes()

    def test_sizes_and_cache(self, tiny: workload.Workload) -> None:
        lines = Path(tiny.path("events")).read_text().splitlines()

        assert len(lines) == 1 + 1_000
        assert workload.ensure("1k", root=tiny.folder.parent.parent) == tiny

    def test_unknown_size_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown size"):
            workload.ensure("3k")


class TestAgentEconomy:
    def test_routing_is_bounded_and_a_healthy_run_asks_nothing(self, tmp_path: Path) -> None:
        from benchmarks import economy

        figures = economy.measure(tmp_path, failing_sizes=(10, 5_000))

        assert figures["status"] == "measured"
        small, large = (row["total_input_tokens"] for row in figures["routing"])
        assert 0 < small <= large < 3_000
        assert figures["healthy_run"] == {
            "validation": "pass",
            "route": "on_pass",
            "plan_cache_hits": ["daily"],
            "model_calls": 0,
        }
        first, second = figures["described_transformation"]["runs"]
        assert first["model_calls"] == 1 and first["total_input_tokens"] > 0
        assert second["model_calls"] == 0 and second["total_input_tokens"] == 0
        assert figures["failing_run"]["total"]["model_calls"] == 2
        assert 0 < figures["failing_run"]["total"]["cost_usd"] < 0.01
        off, on = figures["backfill_memory"]["without_memory"], figures["backfill_memory"]["with_memory"]
        assert (off["model_calls"], off["requests"], on["model_calls"], on["requests"], on["reused"]) == (
            30,
            30,
            1,
            1,
            29,
        )
        assert on["routes"] == off["routes"] == ["quarantine_bad_rows"] and 0 < on["cost_usd"] < off["cost_usd"]


class TestHarness:
    def test_a_tiny_run_measures_and_reports(self, tmp_path: Path) -> None:
        out = tmp_path / "latest.json"
        env = os.environ | {workload.BENCH_DIR_ENV: str(tmp_path / "bench")}
        command = [sys.executable, "-m", "benchmarks", "--sizes", "1k", "--warehouses", "sqlite", "--targets", "daily"]
        command += ["--sections", "e2e,strategies", "--strategy-sizes", "1k", "--strategies", "upsert"]
        command += ["--out", str(out), "--markdown", str(tmp_path / "latest.md")]

        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)

        assert proc.returncode == 0, proc.stderr[-2000:]
        results = json.loads(out.read_text())
        (row,) = results["comparisons"]
        assert row["same_table"] is True
        assert row["errors"] == {}
        assert set(row["seconds"]) == {"pipeline", "naive", "limit"}
        assert all(s > 0 for s in row["seconds"].values())
        assert results["memory"]["peak_rss_mib"]["1k"]["pipeline"] > 0
        assert "| 1k | sqlite | daily |" in (tmp_path / "latest.md").read_text()
        (versus_dlt,) = results["strategies"]
        assert (versus_dlt["strategy"], versus_dlt["same_table"], versus_dlt["errors"]) == ("upsert", True, {})
        assert set(versus_dlt["seconds"]) == {"pipeline", "dlt"}
