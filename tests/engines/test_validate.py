"""The validate engine over real staged Parquet and a real DuckDB: every rule passing and failing."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from airflow_agent_provider.contracts import DatasetRef, Issue, QualityRule, StageResult, parse_quality_rules
from airflow_agent_provider.engines.staging import DatasetWriter
from airflow_agent_provider.engines.validate import validate_dataset

REF_TIME = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)


def stage(root: str, columns: dict[str, Any], name: str = "events", *, parts: int = 1) -> DatasetRef:
    """Stage a small table (split over ``parts`` part files) and return its ref."""
    table = pa.table(columns)
    writer = DatasetWriter(f"{root}/dag/run/task/{name}")
    step = max(1, -(-table.num_rows // parts))
    for start in range(0, table.num_rows, step):
        writer.write(table.slice(start, step))
    return writer.finish(table.schema)


def check(ref: DatasetRef, rules: list[dict[str, Any]] | None = None, **kwargs: Any) -> StageResult:
    kwargs.setdefault("reference_time", REF_TIME)
    return validate_dataset(ref, dataset="events", quality_rules=parse_quality_rules(rules), **kwargs)


def only_issue(result: StageResult) -> Issue:
    assert result.status == "fail"
    assert len(result.issues) == 1, [i.message for i in result.issues]
    return result.issues[0]


@pytest.fixture
def events(staging_root: str) -> DatasetRef:
    """Ten events: a duplicated id, a typo'd type, a null user, a negative amount, a stale and a future time."""
    return stage(
        staging_root,
        {
            "event_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 9],
            "event_type": ["click", "view", "clik", "purchase", "click", "view", "clik", "vieww", "click", None],
            "user_id": [10, 11, None, 12, 13, 14, 15, 16, 17, 18],
            "amount": [1.5, 2.0, 0.0, -3.0, 10.0, 99.5, 100.0, 7.0, 8.0, 250.0],
            "email": ["a@x.io", "b@x.io", "bad", "c@x.io", None, "d@x.io", "e@x.io", "f@x.io", "g@x.io", "h@x.io"],
            "event_time": [
                datetime(2026, 11, 9),
                datetime(2026, 11, 1),
                datetime(2026, 10, 1),  # 40 days before the reference time: stale
                datetime(2026, 11, 10, 11),
                datetime(2026, 11, 11, 11),  # within reference + 1 day: fine
                datetime(2026, 11, 13),  # beyond reference + 1 day: future
                datetime(2026, 10, 12),
                datetime(2026, 11, 5),
                datetime(2026, 11, 6),
                datetime(2026, 11, 7),
            ],
        },
        parts=3,
    )


class TestResultEnvelope:
    def test_clean_dataset_passes_with_metrics_and_same_uri(self, events: DatasetRef) -> None:
        result = check(events, [{"rule": "not_null", "column": "event_id"}])

        assert result.stage == "validate"
        assert result.status == "pass"
        assert result.issues == []
        assert result.datasets == {"events": events}
        assert result.metrics["row_count"] == 10
        assert result.metrics["columns"] == {
            "event_id": "integer",
            "event_type": "string",
            "user_id": "integer",
            "amount": "float",
            "email": "string",
            "event_time": "timestamp",
        }
        assert result.metrics["null_rates"]["user_id"] == 0.1
        assert result.metrics["null_rates"]["event_id"] == 0.0
        assert result.metrics["rules_checked"] == 1
        assert result.metrics["rules_failed"] == 0
        assert result.metrics["schema_match"] is True
        assert result.metrics["data_location"] == events.uri
        assert result.duration_s >= 0

    def test_result_survives_the_xcom_round_trip(self, events: DatasetRef) -> None:
        result = check(events, [{"rule": "in_list", "column": "event_type", "values": ["click"]}])

        restored = StageResult.from_xcom(json.loads(json.dumps(result.to_xcom())))

        assert restored == result
        assert restored.issues[0].affected_rows == 6

    def test_several_failing_rules_are_all_reported(self, events: DatasetRef) -> None:
        result = check(
            events,
            [
                {"rule": "not_null", "column": "user_id"},
                {"rule": "unique", "column": "event_id"},
                {"rule": "not_null", "column": "event_id"},
            ],
        )

        assert result.status == "fail"
        assert [i.type for i in result.issues] == ["not_null_violation", "duplicate_values"]
        assert result.metrics["rules_checked"] == 3
        assert result.metrics["rules_failed"] == 2

    def test_empty_dataset_passes_column_rules(self, staging_root: str) -> None:
        ref = DatasetWriter(f"{staging_root}/d/r/t/empty").finish(pa.schema([("id", pa.int64())]))

        result = check(ref, [{"rule": "not_null", "column": "id"}, {"rule": "unique", "column": "id"}])

        assert result.status == "pass"
        assert result.metrics["row_count"] == 0
        assert result.metrics["null_rates"] == {"id": 0.0}


class TestColumnRules:
    @pytest.mark.parametrize(
        "rule",
        [
            pytest.param({"rule": "not_null", "column": "event_id"}, id="not_null"),
            pytest.param({"rule": "unique", "column": "user_id"}, id="unique"),
            pytest.param(
                {"rule": "in_list", "column": "event_type", "values": ["click", "view", "clik", "purchase", "vieww"]},
                id="in_list",
            ),
            pytest.param({"rule": "range", "column": "amount", "min": -3, "max": 250}, id="range"),
            pytest.param({"rule": "range", "column": "amount", "min": -10}, id="range_open_max"),
            pytest.param({"rule": "regex", "column": "event_type", "pattern": r"[a-z]+"}, id="regex"),
            pytest.param({"rule": "row_count_between", "min": 10, "max": 10}, id="row_count_between"),
            pytest.param({"rule": "sql", "predicate": "amount < 1000 OR user_id IS NULL"}, id="sql"),
        ],
    )
    def test_rule_passes_on_conforming_data(self, events: DatasetRef, rule: dict[str, Any]) -> None:
        result = check(events, [rule])

        assert result.status == "pass", [i.message for i in result.issues]
        assert result.metrics["rules_failed"] == 0

    def test_not_null_counts_null_rows(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "not_null", "column": "user_id"}]))

        assert issue.type == "not_null_violation"
        assert (issue.dataset, issue.column, issue.rule) == ("events", "user_id", "not_null(user_id)")
        assert issue.affected_rows == 1
        assert issue.sample == []
        assert issue.message == "events.user_id: 1 of 10 rows are null"

    def test_unique_counts_every_row_of_a_duplicated_value(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": [1, 2, 2, 3, 3, 3, 4, None, None]})

        issue = only_issue(check(ref, [{"rule": "unique", "column": "id"}]))

        assert issue.type == "duplicate_values"
        assert issue.affected_rows == 5
        assert issue.found == "2 duplicated values"
        assert issue.sample == [3, 2]
        assert issue.message == "events.id: 5 rows share 2 duplicated values, e.g. 3"

    def test_in_list_reports_offenders_most_frequent_first_and_ignores_nulls(self, events: DatasetRef) -> None:
        rule = {"rule": "in_list", "column": "event_type", "values": ["click", "view", "purchase"]}

        issue = only_issue(check(events, [rule]))

        assert issue.type == "value_not_in_list"
        assert issue.affected_rows == 3
        assert issue.sample == ["clik", "vieww"]
        assert issue.expected == ["click", "view", "purchase"]
        assert issue.rule == "in_list(event_type)"
        assert issue.message == "events.event_type: 3 rows not in ['click', 'view', 'purchase'], e.g. 'clik'"

    def test_in_list_on_integers(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "in_list", "column": "user_id", "values": [10, 11, 12]}]))

        assert issue.affected_rows == 6
        assert issue.sample == [13, 14, 15, 16, 17]

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("x'); DROP TABLE data; --", id="quote_and_drop"),
            pytest.param("click' OR '1'='1", id="tautology"),
            pytest.param("$v0", id="placeholder_lookalike"),
        ],
    )
    def test_injection_looking_values_are_data(self, staging_root: str, value: str) -> None:
        ref = stage(staging_root, {"kind": ["click", value, value, "view"]})

        allowed = check(ref, [{"rule": "in_list", "column": "kind", "values": ["click", "view", value]}])
        refused = check(ref, [{"rule": "in_list", "column": "kind", "values": ["click", "view"]}])
        counted = check(ref, [{"rule": "not_null", "column": "kind"}])

        assert allowed.status == "pass"
        assert only_issue(refused).affected_rows == 2
        assert only_issue(refused).sample == [value]
        assert counted.metrics["row_count"] == 4

    def test_in_list_with_an_empty_list_refuses_every_value(self, staging_root: str) -> None:
        ref = stage(staging_root, {"kind": ["a", "b", None]})

        issue = only_issue(check(ref, [{"rule": "in_list", "column": "kind", "values": []}]))

        assert issue.affected_rows == 2

    @pytest.mark.parametrize(
        ("bounds", "affected", "sample"),
        [
            pytest.param({"min": 0, "max": 100}, 2, [-3.0, 250.0], id="both_bounds"),
            pytest.param({"min": 0}, 1, [-3.0], id="min_only"),
            pytest.param({"max": 99.5}, 2, [100.0, 250.0], id="max_only"),
        ],
    )
    def test_range_counts_values_outside_bounds(
        self, events: DatasetRef, bounds: dict[str, Any], affected: int, sample: list[float]
    ) -> None:
        issue = only_issue(check(events, [{"rule": "range", "column": "amount", **bounds}]))

        assert issue.type == "out_of_range"
        assert issue.affected_rows == affected
        assert issue.sample == sample
        assert issue.expected == [bounds.get("min"), bounds.get("max")]
        assert issue.found == [-3.0, 250.0]

    def test_range_on_dates_with_text_bounds(self, staging_root: str) -> None:
        ref = stage(staging_root, {"day": [date(2026, 1, 1), date(2026, 6, 1), date(2027, 1, 1)]})

        issue = only_issue(check(ref, [{"rule": "range", "column": "day", "min": "2026-01-01", "max": "2026-12-31"}]))

        assert issue.affected_rows == 1
        assert issue.sample == ["2027-01-01"]

    def test_regex_must_match_the_whole_value(self, events: DatasetRef) -> None:
        rule = {"rule": "regex", "column": "email", "pattern": r"[a-z]+@[a-z]+\.io"}

        issue = only_issue(check(events, [rule]))

        assert issue.type == "regex_mismatch"
        assert issue.affected_rows == 1
        assert issue.sample == ["bad"]
        assert issue.expected == r"[a-z]+@[a-z]+\.io"

    def test_regex_partial_match_is_a_violation(self, staging_root: str) -> None:
        ref = stage(staging_root, {"code": ["AB12", "xAB12", "AB123"]})

        issue = only_issue(check(ref, [{"rule": "regex", "column": "code", "pattern": r"[A-Z]{2}\d{2}"}]))

        assert issue.affected_rows == 2
        assert issue.sample == ["AB123", "xAB12"]


class TestFreshness:
    def test_within_last_n_days_counts_stale_and_future_rows(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "within_last_n_days", "column": "event_time", "days": 30}]))

        assert issue.type == "stale_values"
        assert issue.affected_rows == 2
        assert issue.sample == ["2026-10-01 00:00:00", "2026-11-13 00:00:00"]
        assert "1 older than" in issue.message
        assert "1 later than" in issue.message

    def test_window_bounds_are_inclusive(self, events: DatasetRef) -> None:
        # oldest row 2026-10-01 is exactly 42 days back; newest 2026-11-13 is exactly reference + 1 day
        reference = datetime(2026, 11, 12, tzinfo=timezone.utc)

        result = check(events, [{"rule": "within_last_42_days", "column": "event_time"}], reference_time=reference)

        assert result.status == "pass"

    def test_seed_rule_name_within_last_30_days(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"column": "event_time", "rule": "within_last_30_days"}]))

        assert issue.rule == "within_last_n_days(event_time)"
        assert issue.affected_rows == 2

    @pytest.mark.parametrize(
        ("reference", "affected"),
        [
            pytest.param(datetime(2026, 11, 12, tzinfo=timezone.utc), 1, id="a_later_interval_sees_one_stale"),
            pytest.param(datetime(2026, 10, 15, tzinfo=timezone.utc), 8, id="an_earlier_interval_sees_the_future"),
            pytest.param(datetime(2026, 11, 12), 1, id="naive_reference_is_utc"),
        ],
    )
    def test_window_is_relative_to_reference_time(self, events: DatasetRef, reference: datetime, affected: int) -> None:
        result = check(
            events, [{"rule": "within_last_n_days", "column": "event_time", "days": 40}], reference_time=reference
        )

        assert only_issue(result).affected_rows == affected

    def test_timezone_aware_column_compares_instants(self, staging_root: str) -> None:
        times = [REF_TIME - timedelta(days=2, hours=1), REF_TIME - timedelta(days=1), REF_TIME + timedelta(days=2)]
        ref = stage(staging_root, {"at": pa.array(times, pa.timestamp("us", tz="UTC"))})

        issue = only_issue(check(ref, [{"rule": "within_last_n_days", "column": "at", "days": 2}]))

        assert issue.affected_rows == 2

    def test_date_column(self, staging_root: str) -> None:
        ref = stage(
            staging_root, {"day": [date(2026, 11, 10), date(2026, 11, 3), date(2026, 11, 2), date(2026, 11, 12)]}
        )

        issue = only_issue(check(ref, [{"rule": "within_last_n_days", "column": "day", "days": 7}]))

        assert issue.sample == ["2026-11-02", "2026-11-12"]

    def test_non_temporal_column_is_a_rule_error(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "within_last_n_days", "column": "email", "days": 7}]))

        assert issue.type == "rule_error"
        assert "date or timestamp" in str(issue.found)


class TestRowCount:
    @pytest.mark.parametrize(
        ("bounds", "expected"),
        [
            pytest.param({"min": 11}, [11, None], id="too_few"),
            pytest.param({"max": 9}, [None, 9], id="too_many"),
            pytest.param({"min": 1, "max": 5}, [1, 5], id="outside_both"),
        ],
    )
    def test_row_count_outside_bounds(self, events: DatasetRef, bounds: dict[str, int], expected: list[Any]) -> None:
        issue = only_issue(check(events, [{"rule": "row_count_between", **bounds}]))

        assert issue.type == "row_count_out_of_range"
        assert issue.expected == expected
        assert issue.found == 10
        assert issue.column is None

    def test_text_bounds_are_a_bad_argument(self, events: DatasetRef) -> None:
        with pytest.raises(ValueError, match="row count bounds must be numbers"):
            check(events, [{"rule": "row_count_between", "min": "ten"}])


class TestCustomPredicate:
    def test_false_rows_are_counted_with_the_columns_it_reads(self, events: DatasetRef) -> None:
        rule = {"rule": "sql", "predicate": "amount >= 0 AND amount < 200", "name": "sane_amount"}

        issue = only_issue(check(events, [rule]))

        assert issue.type == "sql_predicate_failed"
        assert issue.rule == "sane_amount"
        assert issue.expected == "amount >= 0 AND amount < 200"
        assert issue.affected_rows == 2
        assert issue.sample == [-3.0, 250.0]

    def test_sample_of_a_multi_column_predicate_shows_each_column(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "sql", "predicate": "user_id < 12 OR amount > 50"}]))

        assert issue.affected_rows == 4
        assert issue.sample == [
            "{'user_id': 12, 'amount': -3.0}",
            "{'user_id': 13, 'amount': 10.0}",
            "{'user_id': 16, 'amount': 7.0}",
            "{'user_id': 17, 'amount': 8.0}",
        ]

    def test_null_result_is_not_a_violation(self, events: DatasetRef) -> None:
        assert check(events, [{"rule": "sql", "predicate": "user_id > 0"}]).status == "pass"

    @pytest.mark.parametrize(
        ("predicate", "cause"),
        [
            pytest.param("amount >", "Parser Error", id="does_not_parse"),
            pytest.param("no_such_column > 1", "no_such_column", id="unknown_column"),
            pytest.param("count(*) > 1", "aggregate", id="aggregate"),
            pytest.param("true) ; DROP TABLE data; SELECT (1", "syntax error", id="unbalanced_statements"),
            pytest.param(
                "true)) FROM data; DROP TABLE data; SELECT count(*) FILTER (WHERE NOT (true",
                "one boolean SQL expression",
                id="stacked_statements",
            ),
        ],
    )
    def test_broken_predicate_is_a_rule_error(self, events: DatasetRef, predicate: str, cause: str) -> None:
        issue = only_issue(check(events, [{"rule": "sql", "predicate": predicate}]))

        assert issue.type == "rule_error"
        assert cause.lower() in str(issue.found).lower()
        assert issue.expected == predicate
        assert "\n" not in issue.message

    @pytest.mark.parametrize(
        "predicate",
        [
            pytest.param("(SELECT count(*) FROM read_csv('{secret}')) > 0", id="read_csv"),
            pytest.param("(SELECT count(*) FROM read_text('{secret}')) > 0", id="read_text"),
            pytest.param("(SELECT count(*) FROM '{secret}') > 0", id="replacement_scan"),
        ],
    )
    def test_predicate_cannot_read_files(self, events: DatasetRef, tmp_path: Path, predicate: str) -> None:
        secret = tmp_path / "secret.csv"
        secret.write_text("password\nhunter2\n")

        issue = only_issue(check(events, [{"rule": "sql", "predicate": predicate.format(secret=secret)}]))

        assert issue.type == "rule_error"
        assert "is not allowed" in issue.message  # the SQL gate refuses it before the sandbox would
        assert "hunter2" not in issue.model_dump_json()

    def test_predicate_cannot_reenable_file_access(self, events: DatasetRef, tmp_path: Path) -> None:
        predicate = "true) ; SET enable_external_access = true; SELECT (true"

        issue = only_issue(check(events, [{"rule": "sql", "predicate": predicate}]))

        assert issue.type == "rule_error"

    def test_issues_keep_the_declared_rule_order(self, events: DatasetRef) -> None:
        result = check(
            events,
            [
                {"rule": "sql", "predicate": "amount >= 0"},
                {"rule": "not_null", "column": "user_id"},
                {"rule": "sql", "predicate": "amount < 200"},
            ],
        )

        assert [(i.type, i.affected_rows) for i in result.issues] == [
            ("sql_predicate_failed", 1),
            ("not_null_violation", 1),
            ("sql_predicate_failed", 1),
        ]
        assert result.metrics["rules_checked"] == 3

    def test_predicate_sees_part_files_reconciled_to_one_type(self, staging_root: str) -> None:
        writer = DatasetWriter(f"{staging_root}/d/r/t/mixed")
        writer.write(pa.table({"n": pa.array([1, 2], pa.int64())}))
        writer.write(pa.table({"n": pa.array([2.5, -1.0], pa.float64())}))
        ref = writer.finish()

        issue = only_issue(check(ref, [{"rule": "sql", "predicate": "n > 0 AND n = floor(n)"}]))

        assert issue.affected_rows == 2
        assert issue.sample == [-1.0, 2.5]


class TestSchema:
    def test_matching_schema_passes_and_integer_satisfies_float(self, events: DatasetRef) -> None:
        schema = {
            "event_id": "float",
            "event_type": "string",
            "user_id": "integer",
            "amount": "float",
            "email": "string",
            "event_time": "timestamp",
        }

        result = check(events, expected_schema=schema)

        assert result.status == "pass"
        assert result.metrics["schema_match"] is True
        assert result.warnings == []

    def test_castable_strings_are_a_mismatch_with_no_affected_rows(self, staging_root: str) -> None:
        ref = stage(staging_root, {"user_id": ["1", "22", None, " 7 "]})

        issue = only_issue(check(ref, expected_schema={"user_id": "integer"}))

        assert issue.type == "schema_mismatch"
        assert (issue.expected, issue.found, issue.affected_rows) == ("integer", "string", 0)
        assert "castable" in issue.message

    @pytest.mark.parametrize(
        ("values", "want", "affected", "sample"),
        [
            pytest.param(["1", "x", "1.5", "x", None], "integer", 3, ["x", "1.5"], id="integer"),
            pytest.param(["1.5", "n/a", "2"], "float", 1, ["n/a"], id="float"),
            pytest.param(["2026-11-10", "10/11/2026", "yesterday"], "date", 2, ["10/11/2026", "yesterday"], id="date"),
            pytest.param(["2026-11-10 10:00:00", "soon"], "timestamp", 1, ["soon"], id="timestamp"),
            pytest.param(["true", "maybe", "false"], "boolean", 1, ["maybe"], id="boolean"),
        ],
    )
    def test_uncastable_strings_are_counted_and_sampled(
        self, staging_root: str, values: list[str | None], want: str, affected: int, sample: list[str]
    ) -> None:
        ref = stage(staging_root, {"col": values})

        issue = only_issue(check(ref, expected_schema={"col": want}))

        assert issue.type == "schema_mismatch"
        assert issue.affected_rows == affected
        assert issue.sample == sample
        assert "cannot be read as" in issue.message

    def test_float_data_expected_as_integer_counts_fractions(self, staging_root: str) -> None:
        ref = stage(staging_root, {"n": [1.0, 2.5, 3.0]})

        issue = only_issue(check(ref, expected_schema={"n": "integer"}))

        assert (issue.found, issue.affected_rows, issue.sample) == ("float", 1, [2.5])

    def test_type_without_any_cast_counts_every_value(self, staging_root: str) -> None:
        ref = stage(staging_root, {"at": [datetime(2026, 1, 1), None, datetime(2026, 1, 2)]})

        issue = only_issue(check(ref, expected_schema={"at": "boolean"}))

        assert (issue.found, issue.affected_rows) == ("timestamp", 2)

    def test_missing_column_is_a_schema_issue(self, events: DatasetRef) -> None:
        result = check(events, expected_schema={"event_id": "integer", "country": "string"})

        issue = only_issue(result)
        assert (issue.type, issue.column, issue.expected) == ("missing_column", "country", "string")
        assert result.metrics["schema_match"] is False

    def test_unexpected_column_is_only_a_warning(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": [1, 2], "extra": ["a", "b"]})

        result = check(ref, expected_schema={"id": "integer"})

        assert result.status == "pass"
        assert result.issues == []
        assert result.warnings == [
            "events.extra: unexpected column (string), not in expected_schema (allow_extra_columns=True allows them)"
        ]
        assert result.metrics["schema_match"] is True

    def test_an_unexpected_column_with_a_space_in_its_name_is_named_whole(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": [1, 2], "unit price": [1.5, 2.0]})

        result = check(ref, expected_schema={"id": "integer"})

        assert result.warnings == [
            "events.unit price: unexpected column (float), not in expected_schema "
            "(allow_extra_columns=True allows them)"
        ]

    def test_unexpected_columns_are_one_warning_and_none_when_allowed(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": [1, 2], **{f"c{i}": ["a", "b"] for i in range(12)}})

        partial = check(ref, expected_schema={"id": "integer"})
        allowed = check(ref, expected_schema={"id": "integer", "c0": "integer"}, allow_extra_columns=True)

        assert partial.warnings == [
            "events: 12 unexpected columns c0 (string), c1 (string), c2 (string), c3 (string), c4 (string), "
            "c5 (string), c6 (string), c7 (string), c8 (string), c9 (string) and 2 more, not in expected_schema "
            "(allow_extra_columns=True allows them)"
        ]
        assert (partial.status, allowed.warnings) == ("pass", [])
        assert [issue.type for issue in allowed.issues] == ["schema_mismatch"]  # the columns it names still count

    def test_mismatch_is_a_warning_when_the_dag_allows_it(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": ["1", "x"]})

        result = check(ref, expected_schema={"id": "integer", "gone": "date"}, fail_on_schema_mismatch=False)

        assert result.status == "pass"
        assert result.issues == []
        assert len(result.warnings) == 2
        assert result.metrics["schema_match"] is False

    def test_all_null_column_matches_any_type(self, staging_root: str) -> None:
        ref = stage(staging_root, {"id": [1, 2], "note": pa.array([None, None], pa.null())})

        assert check(ref, expected_schema={"id": "integer", "note": "date"}).status == "pass"

    def test_unknown_logical_type_is_a_bad_argument(self, events: DatasetRef) -> None:
        with pytest.raises(ValueError, match=r"column 'amount' has unknown type 'money'"):
            check(events, expected_schema={"amount": "money"})


class TestNullRate:
    def test_columns_over_the_threshold_are_issues(self, events: DatasetRef) -> None:
        result = check(events, fail_on_null_rate_exceeds=0.05)

        assert result.status == "fail"
        assert [(i.type, i.column, i.affected_rows) for i in result.issues] == [
            ("null_rate_exceeded", "event_type", 1),
            ("null_rate_exceeded", "user_id", 1),
            ("null_rate_exceeded", "email", 1),
        ]

    def test_each_offending_column_gets_threshold_and_actual(self, staging_root: str) -> None:
        ref = stage(staging_root, {"a": [1, None, None, 4], "b": [1, 2, 3, None], "c": [1, 2, 3, 4]})

        result = check(ref, fail_on_null_rate_exceeds=0.25)

        assert result.status == "fail"
        assert [(i.column, i.threshold, i.actual, i.affected_rows) for i in result.issues] == [("a", 0.25, 0.5, 2)]
        assert result.issues[0].message == "events.a: 50.0% nulls (2 of 4 rows), over the 25.0% threshold"
        assert result.metrics["null_rates"] == {"a": 0.5, "b": 0.25, "c": 0.0}

    def test_no_threshold_means_no_null_rate_issue(self, staging_root: str) -> None:
        ref = stage(staging_root, {"a": [None, None, 1]})

        assert check(ref).status == "pass"

    @pytest.mark.parametrize("threshold", [pytest.param(-0.1, id="negative"), pytest.param(5, id="percent")])
    def test_threshold_must_be_a_share(self, events: DatasetRef, threshold: float) -> None:
        with pytest.raises(ValueError, match="fail_on_null_rate_exceeds"):
            check(events, fail_on_null_rate_exceeds=threshold)


class TestRulesOnMissingColumns:
    @pytest.mark.parametrize(
        "rule",
        [
            pytest.param({"rule": "not_null", "column": "ghost"}, id="not_null"),
            pytest.param({"rule": "in_list", "column": "ghost", "values": [1]}, id="in_list"),
            pytest.param({"rule": "within_last_n_days", "column": "ghost", "days": 1}, id="within"),
        ],
    )
    def test_rule_on_missing_column_is_an_issue_not_a_crash(self, events: DatasetRef, rule: dict[str, Any]) -> None:
        issue = only_issue(check(events, [rule]))

        assert (issue.type, issue.column) == ("missing_column", "ghost")
        assert issue.rule == QualityRule.model_validate(rule).label

    def test_value_that_cannot_compare_is_a_rule_error_in_the_users_terms(self, events: DatasetRef) -> None:
        issue = only_issue(check(events, [{"rule": "range", "column": "email", "min": 5}]))

        assert issue.type == "rule_error"
        assert (
            issue.message
            == "events.email: rule range(email) could not run: the column holds text and the rule needs numbers"
        )
        assert "Cannot compare values of type VARCHAR and type INTEGER" in str(issue.found)  # the engine's words

    def test_a_rule_on_a_mistyped_column_is_listed_beside_the_schema_issue(self, staging_root: str) -> None:
        ref = stage(staging_root, {"carrier": ["UA", None], "dep_delay": ["5", "late"]})
        rules = [{"rule": "not_null", "column": "carrier"}, {"rule": "range", "column": "dep_delay", "min": 0}]

        result = check(ref, rules, expected_schema={"carrier": "string", "dep_delay": "float"})

        assert [issue.type for issue in result.issues] == ["schema_mismatch", "rule_error", "not_null_violation"]
        assert result.issues[1].message == (
            "events.dep_delay: rule range(dep_delay) could not run: the column holds text and the rule needs numbers "
            "(it follows from the schema issue on this column: expected float, found string)"
        )


class TestSamples:
    def test_sample_is_bounded_to_sample_size(self, staging_root: str) -> None:
        ref = stage(staging_root, {"code": [f"bad{i:02d}" for i in range(20)]})

        issue = only_issue(check(ref, [{"rule": "in_list", "column": "code", "values": ["ok"]}]))

        assert issue.affected_rows == 20
        assert issue.sample == ["bad00", "bad01", "bad02", "bad03", "bad04"]

    def test_smaller_sample_size_is_honoured(self, staging_root: str) -> None:
        ref = stage(staging_root, {"code": ["a", "b", "c"]})

        result = check(ref, [{"rule": "in_list", "column": "code", "values": []}], sample_size=2)

        assert only_issue(result).sample == ["a", "b"]

    def test_long_values_are_truncated(self, staging_root: str) -> None:
        ref = stage(staging_root, {"text": ["x" * 5000]})

        issue = only_issue(check(ref, [{"rule": "regex", "column": "text", "pattern": "y+"}]))

        assert len(issue.sample[0]) == 120
        assert issue.sample[0].endswith("…")
        assert len(issue.message) < 200

    def test_sample_size_zero_keeps_counts_and_drops_samples(self, events: DatasetRef) -> None:
        result = check(
            events,
            [{"rule": "unique", "column": "event_id"}, {"rule": "in_list", "column": "event_type", "values": []}],
            sample_size=0,
        )

        assert [(i.affected_rows, i.sample) for i in result.issues] == [(2, []), (9, [])]

    def test_negative_sample_size_is_a_bad_argument(self, events: DatasetRef) -> None:
        with pytest.raises(ValueError, match="sample_size"):
            check(events, sample_size=-1)


class TestArguments:
    def test_ref_must_be_a_dataset_ref(self) -> None:
        with pytest.raises(TypeError, match="DatasetRef"):
            validate_dataset({"uri": "/tmp/x"}, dataset="events")  # type: ignore[arg-type]

    def test_rules_must_be_parsed(self, events: DatasetRef) -> None:
        with pytest.raises(TypeError, match="parse_quality_rules"):
            validate_dataset(events, dataset="events", quality_rules=[{"rule": "not_null"}])  # type: ignore[list-item]


class TestScale:
    def test_two_million_rows_validate(self, staging_root: str) -> None:
        import pyarrow.compute as pc

        rows = 2_000_000
        ids = pa.array(range(rows), pa.int64())
        kinds = pc.if_else(pc.equal(pc.bit_wise_and(ids, 1023), 7), "clik", "click")
        writer = DatasetWriter(f"{staging_root}/d/r/t/big")
        for start in range(0, rows, 500_000):
            writer.write(pa.table({"id": ids.slice(start, 500_000), "kind": kinds.slice(start, 500_000)}))
        ref = writer.finish()

        result = check(
            ref,
            [
                {"rule": "unique", "column": "id"},
                {"rule": "not_null", "column": "kind"},
                {"rule": "in_list", "column": "kind", "values": ["click", "view"]},
                {"rule": "regex", "column": "kind", "pattern": "cli[a-z]+"},
                {"rule": "range", "column": "id", "min": 0, "max": rows - 1},
                {"rule": "sql", "predicate": "id >= 0"},
            ],
            expected_schema={"id": "integer", "kind": "string"},
            fail_on_null_rate_exceeds=0.0,
        )

        assert result.metrics["row_count"] == rows
        assert [(i.type, i.affected_rows, i.sample) for i in result.issues] == [
            ("value_not_in_list", rows // 1024 + 1, ["clik"]),
        ]


class TestOtherDatasets:
    """Rules that read another staged dataset of the run: in_dataset, and sql predicates by name."""

    @pytest.fixture
    def flights(self, staging_root: str) -> DatasetRef:
        return stage(staging_root, {"carrier": ["AA", "UA", "ZZ", "ZZ", "XX", None], "n": [1, 2, 3, 4, 5, 6]})

    @pytest.fixture
    def airlines(self, staging_root: str) -> DatasetRef:
        return stage(staging_root, {"code": ["AA", "UA", "DL", None], "name": ["A", "U", "D", "-"]}, "airlines")

    def test_in_dataset_counts_values_the_other_dataset_lacks(self, flights: DatasetRef, airlines: DatasetRef) -> None:
        rule = {"rule": "in_dataset", "column": "carrier", "dataset": "airlines", "dataset_column": "code"}
        result = check(flights, [rule], others={"airlines": airlines})
        issue = only_issue(result)
        assert (issue.type, issue.affected_rows, issue.expected) == ("value_not_in_dataset", 3, "airlines.code")
        assert issue.sample == [
            "ZZ",
            "XX",
        ]  # most frequent first; the null passes, the null in airlines matches nothing
        assert "3 rows whose value is not in airlines.code, e.g. 'ZZ'" in issue.message
        assert result.metrics["referenced_datasets"]["airlines"]["uri"] == airlines.uri

    def test_in_dataset_passes_when_every_value_is_known(self, staging_root: str, airlines: DatasetRef) -> None:
        ref = stage(staging_root, {"code": ["AA", "DL", None]})
        assert check(
            ref, [{"rule": "in_dataset", "column": "code", "dataset": "airlines"}], others={"airlines": airlines}
        ).passed

    def test_in_dataset_naming_a_dataset_the_run_lacks_is_a_bad_argument(self, flights: DatasetRef) -> None:
        with pytest.raises(ValueError, match=r"no other staged dataset named 'airlines'.*upstream="):
            check(flights, [{"rule": "in_dataset", "column": "carrier", "dataset": "airlines"}])

    def test_in_dataset_over_a_column_the_other_lacks_is_a_rule_error(
        self, flights: DatasetRef, airlines: DatasetRef
    ) -> None:
        rule = {"rule": "in_dataset", "column": "carrier", "dataset": "airlines"}
        issue = only_issue(check(flights, [rule], others={"airlines": airlines}))
        assert issue.type == "rule_error" and "airlines has no column 'carrier'" in issue.message

    def test_in_dataset_needs_its_dataset(self) -> None:
        with pytest.raises(ValueError, match="missing its argument"):
            parse_quality_rules([{"rule": "in_dataset", "column": "carrier"}])

    def test_sql_predicate_reads_another_dataset_by_name(self, flights: DatasetRef, airlines: DatasetRef) -> None:
        # airlines.code holds a null: without the WHERE, `'ZZ' IN (..., NULL)` is null and the row passes
        predicate = "carrier IN (SELECT code FROM airlines WHERE code IS NOT NULL)"
        rule = {"rule": "sql", "predicate": predicate, "column": "carrier"}
        issue = only_issue(check(flights, [rule], others={"airlines": airlines}))
        assert (issue.type, issue.affected_rows, issue.sample) == ("sql_predicate_failed", 3, ["ZZ", "XX"])

    def test_sql_predicate_reads_no_table_but_the_staged_datasets(
        self, flights: DatasetRef, airlines: DatasetRef
    ) -> None:
        rule = {"rule": "sql", "predicate": "carrier IN (SELECT code FROM planes)"}
        issue = only_issue(check(flights, [rule], others={"airlines": airlines}))
        assert issue.type == "rule_error"
        assert "table 'planes' is not allowed" in issue.message and "airlines" in issue.message

    def test_quarantine_validates_the_clean_rows_against_the_same_other_dataset(
        self, flights: DatasetRef, airlines: DatasetRef, staging_root: str
    ) -> None:
        from airflow_agent_provider.engines.quarantine import quarantine_dataset

        rules = parse_quality_rules(
            [
                {"rule": "in_list", "column": "carrier", "values": ["AA", "UA"]},
                {"rule": "in_dataset", "column": "carrier", "dataset": "airlines", "dataset_column": "code"},
            ]
        )
        validation = validate_dataset(
            flights, dataset="events", quality_rules=rules, reference_time=REF_TIME, others={"airlines": airlines}
        )
        result = quarantine_dataset(
            validation, uri_for=lambda name: f"{staging_root}/dag/run/quarantine/{name}", quality_rules=rules
        )
        assert result.passed, [issue.message for issue in result.issues]
        assert (result.metrics["rows_after"], result.metrics["rows_quarantined"]) == (3, 3)
