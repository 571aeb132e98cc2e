"""The one-scan validation: footers and scan agree, a passing dataset is read once, the shared DuckDB is safe."""

from __future__ import annotations

import math
import multiprocessing
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_agent_provider.contracts import DatasetRef, StageResult, parse_quality_rules
from airflow_agent_provider.engines import validate
from airflow_agent_provider.engines.staging import DatasetWriter, describe
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.engines.validate_scan import ColumnStats

REF_TIME = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
NAN = float("nan")

RULES = [
    {"rule": "not_null", "column": "id"},
    {"rule": "unique", "column": "id"},
    {"rule": "range", "column": "id", "min": 0, "max": 1000},
    {"rule": "range", "column": "amount", "min": 0},
    {"rule": "range", "column": "amount", "max": 100},
    {"rule": "unique", "column": "big"},
    {"rule": "not_null", "column": "amount"},
]


def stage_parts(root: str, name: str, parts: list[dict[str, list[Any]]], *, statistics: bool) -> DatasetRef:
    """Each dict is one part file; without statistics the footers state nothing, so every answer comes from the scan."""
    folder = Path(root) / name
    if statistics:
        writer = DatasetWriter(str(folder))
        for part in parts:
            writer.write(pa.table(part))
        return writer.finish(pa.table(parts[0]).schema)
    folder.mkdir(parents=True)
    for i, part in enumerate(parts):
        pq.write_table(pa.table(part), folder / f"part-{i:05d}.parquet", write_statistics=False)
    return describe(str(folder))


def run(ref: DatasetRef, rules: list[dict[str, Any]], **kwargs: Any) -> StageResult:
    return validate_dataset(
        ref, dataset="t", quality_rules=parse_quality_rules(rules), reference_time=REF_TIME, **kwargs
    )


def findings(result: StageResult) -> tuple[Any, ...]:
    """Status, issues, null rates and row count. NaN is left out of samples: DuckDB itself prunes a row group
    whose footer max (NaN excluded, as Arrow writes it) is under the bound from a sample query's WHERE, though
    the count, an aggregate FILTER, still includes the NaN (as it did before this engine read footers)."""
    issues = [(i.type, i.rule, i.affected_rows, i.message, [v for v in i.sample if not _nan(v)]) for i in result.issues]
    return result.status, issues, result.metrics["null_rates"], result.metrics["row_count"]


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


CASES = [
    pytest.param(
        [{"id": [1, 2, 3], "amount": [1.0, 2.0, None], "big": [1, 2**40, None]}],
        id="all_pass",
    ),
    pytest.param(
        [
            {"id": [5, None, 7], "amount": [-1.0, 50.0, 101.0], "big": [2**40, 3, 3]},
            {"id": [7, 8, 2000], "amount": [NAN, None, 3.0], "big": [-(2**40), 2**40, None]},
        ],
        id="every_rule_fails_across_parts",
    ),
    pytest.param(
        [
            {"id": [None, None], "amount": [None, None], "big": [None, None]},
            {"id": [-5, 1000], "amount": [0.0, 100.0], "big": [0, 1]},
        ],
        id="an_all_null_part_and_bounds_met_exactly",
    ),
    pytest.param(
        [{"id": [1, 1, 1, 2], "amount": [-0.0, 0.0, 1.0, 2.0], "big": [1, 2, 3, 4]}],
        id="duplicates_within_a_bitmap_span",
    ),
]


class TestFootersAgreeWithTheScan:
    @pytest.mark.parametrize("parts", CASES)
    def test_same_findings_with_and_without_parquet_statistics(self, staging_root: str, parts: list[Any]) -> None:
        with_stats = run(
            stage_parts(staging_root, "stats", parts, statistics=True), RULES, fail_on_null_rate_exceeds=0.5
        )
        scanned = run(stage_parts(staging_root, "plain", parts, statistics=False), RULES, fail_on_null_rate_exceeds=0.5)

        assert findings(with_stats) == findings(scanned)

    def test_column_missing_from_one_part_is_counted_by_the_scan(self, staging_root: str) -> None:
        parts = [{"id": [1, 2], "amount": [1.0, 2.0]}, {"id": [3, 3]}]
        ref = stage_parts(staging_root, "ragged", parts, statistics=False)
        pq.write_table(pa.table(parts[0]), Path(ref.uri) / "part-00000.parquet")  # one part with statistics

        result = run(ref, [{"rule": "not_null", "column": "amount"}, {"rule": "unique", "column": "id"}])

        assert [(i.type, i.affected_rows) for i in result.issues] == [
            ("not_null_violation", 2),
            ("duplicate_values", 2),
        ]

    def test_footers_that_understate_the_span_fall_back_to_an_exact_count(
        self, staging_root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ref = stage_parts(staging_root, "lying", [{"id": [1, 2, 3, 50, 50]}], statistics=True)
        monkeypatch.setattr(validate, "footer_stats", lambda con, files, types: {"id": ColumnStats(0, 1, 3)})

        result = run(ref, [{"rule": "unique", "column": "id"}, {"rule": "not_null", "column": "id"}])

        assert [(i.type, i.affected_rows, i.sample) for i in result.issues] == [("duplicate_values", 2, [50])]

    def test_nan_violates_in_every_query_shape_although_the_footers_leave_it_out(self, staging_root: str) -> None:
        # DuckDB folds "amount > 100" to false from the footers' max (83.67), NaN rows included, in some
        # query shapes (two FILTERs over the column): the shared scan must still count the NaN.
        ref = stage_parts(staging_root, "folded", [{"amount": [59.67, NAN, 83.67, None, 75.66]}], statistics=True)
        rules = [
            {"rule": "range", "column": "amount", "max": 100},
            {"rule": "range", "column": "amount", "min": 0, "max": 100},
            {"rule": "in_list", "column": "amount", "values": [59.67, 83.67, 75.66]},
        ]

        result = run(ref, rules)

        assert [(i.rule, i.affected_rows) for i in result.issues] == [
            ("range(amount)", 1),
            ("range(amount)", 1),
            ("in_list(amount)", 1),
        ]

    def test_nan_counts_against_an_upper_bound_the_footers_cannot_prove(self, staging_root: str) -> None:
        ref = stage_parts(staging_root, "nan", [{"amount": [NAN, 5.0, None]}], statistics=True)

        result = run(
            ref, [{"rule": "range", "column": "amount", "max": 100}, {"rule": "range", "column": "amount", "min": 0}]
        )

        assert [(i.type, i.rule, i.affected_rows) for i in result.issues] == [("out_of_range", "range(amount)", 1)]
        assert "(found 5.0 to nan)" in result.issues[0].message  # not the footers' NaN-blind max


class _Recorder:
    """A connection that remembers every query it runs (the real one does the work)."""

    def __init__(self, con: Any, log: list[str]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *args: Any) -> Any:
        self._log.append(sql)
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    real = validate.shared_cursor
    monkeypatch.setattr(validate, "shared_cursor", lambda: _Recorder(real(), log))
    return log


def split_reads(log: list[str]) -> tuple[list[str], list[str]]:
    """The aggregate scans over ``data``, and the queries with a WHERE (pushed-down counts, samples)."""
    reads = [sql for sql in log if sql.startswith("SELECT") and "FROM data" in sql]
    return [sql for sql in reads if "FROM data WHERE" not in sql], [sql for sql in reads if "FROM data WHERE" in sql]


class TestOneScan:
    RULES: ClassVar[list[dict[str, Any]]] = [
        {"rule": "not_null", "column": "id"},
        {"rule": "unique", "column": "id"},
        {"rule": "in_list", "column": "kind", "values": ["a", "b"]},
        {"rule": "range", "column": "amount", "min": 0, "max": 10},
        {"rule": "regex", "column": "kind", "pattern": "[a-z]"},
        {"rule": "row_count_between", "min": 1},
    ]

    def test_passing_dataset_is_read_by_one_aggregate_query(self, staging_root: str, queries: list[str]) -> None:
        ref = stage_parts(
            staging_root, "ok", [{"id": [1, 2], "kind": ["a", "b"], "amount": [1.0, 2.0]}], statistics=True
        )

        result = run(ref, self.RULES, expected_schema={"id": "integer", "kind": "string", "amount": "float"})

        assert result.passed
        scans, pushed = split_reads(queries)
        assert len(scans) == 1
        assert pushed == ['SELECT count(*) FROM data WHERE "kind" IS NOT NULL AND "kind" NOT IN ($r2_v0, $r2_v1)']

    def test_only_failing_rules_run_more_queries(self, staging_root: str, queries: list[str]) -> None:
        ref = stage_parts(
            staging_root, "bad", [{"id": [1, 2], "kind": ["a", "z"], "amount": [1.0, 2.0]}], statistics=True
        )

        result = run(ref, self.RULES)

        assert [i.type for i in result.issues] == ["value_not_in_list"]
        scans, pushed = split_reads(queries)
        assert len(scans) == 1
        assert len(pushed) == 2  # the in_list count, and its sample

    def test_a_rule_that_breaks_the_shared_query_is_the_only_rule_error(self, staging_root: str) -> None:
        ref = stage_parts(staging_root, "mixed", [{"id": [1, 1, 2], "kind": ["a", "z", "b"]}], statistics=True)
        rules = [
            {"rule": "in_list", "column": "id", "values": ["not a number"]},
            {"rule": "unique", "column": "id"},
            {"rule": "in_list", "column": "kind", "values": ["a", "b"]},
        ]

        result = run(ref, rules)

        assert [(i.type, i.affected_rows) for i in result.issues] == [
            ("rule_error", 0),
            ("duplicate_values", 2),
            ("value_not_in_list", 1),
        ]


FORK_RULES = [{"rule": "unique", "column": "id"}, {"rule": "sql", "predicate": "id < 4"}]


def _validate_in_child(uri: str, queue: Any) -> None:
    ref = describe(uri)
    queue.put([i.affected_rows for i in run(ref, FORK_RULES).issues])


class TestSharedDatabase:
    def test_concurrent_validations_see_their_own_data(self, staging_root: str) -> None:
        refs = [stage_parts(staging_root, f"d{n}", [{"id": [1] * n + [2]}], statistics=True) for n in range(1, 9)]
        got: dict[int, list[Any]] = {}

        def work(n: int, ref: DatasetRef) -> None:
            got[n] = [i.affected_rows for i in run(ref, [{"rule": "unique", "column": "id"}]).issues]

        threads = [threading.Thread(target=work, args=(n, ref)) for n, ref in enumerate(refs, start=1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert got == {n: ([n] if n > 1 else []) for n in range(1, 9)}

    def test_custom_predicates_on_the_shared_sandbox_see_only_their_own_rows(self, staging_root: str) -> None:
        small = stage_parts(staging_root, "small", [{"id": [1, -1]}], statistics=True)
        large = stage_parts(staging_root, "large", [{"id": [-1, -2, -3, 4]}], statistics=True)
        positive = [{"rule": "sql", "predicate": "id > 0"}]
        other_file = [{"rule": "sql", "predicate": f"(SELECT count(*) FROM read_parquet('{small.uri}/*.parquet')) = 2"}]

        counts = [run(ref, positive).issues[0].affected_rows for ref in (small, large, small)]
        escape = run(large, other_file).issues[0]

        assert counts == [1, 3, 1]
        assert escape.type == "rule_error"

    def test_forked_child_validates_with_its_own_database(self, staging_root: str) -> None:
        ref = stage_parts(staging_root, "forked", [{"id": [4, 4, 4]}], statistics=True)
        run(ref, FORK_RULES)  # the parent opens its databases (shared and sandbox) first
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_validate_in_child, args=(ref.uri, queue))
        child.start()
        child.join(timeout=60)

        assert child.exitcode == 0
        assert queue.get(timeout=5) == [3, 3]
