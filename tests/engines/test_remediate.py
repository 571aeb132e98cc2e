"""The fix-plan applier over real staged Parquet in DuckDB: every action, every row rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from airflow_agent_provider.contracts import DatasetRef, FixPlan, RenameColumn, StageResult
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.remediate import apply_fix_plan
from airflow_agent_provider.exceptions import FixPlanNotApplicable

ORDERS = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "score": pd.array([1, 5, 10, None, 7, 3], dtype="Int64"),
        "code": ["A1", "B2", "x", None, "A9", "12"],
        "amount_txt": ["10", "20", "abc", None, "5", "7.5"],
        "flag": ["true", "no", "maybe", None, "1", "f"],
        "day": ["2024-01-05", "05/01/2024", "2024-13-01", None, "2024-02-29", "2024-03-01"],
        "seen": ["05/01/2024 10:30", "06/01/2024 11:00", "bad", None, "2024-01-05", "31/12/2023 23:59"],
    }
)


@pytest.fixture
def orders(staging_root: str) -> DatasetRef:
    writer = staging.DatasetWriter(f"{staging_root}/run/extract/orders")
    writer.write(ORDERS.iloc[:3])
    writer.write(ORDERS.iloc[3:])
    return writer.finish()


@pytest.fixture
def fix(orders: DatasetRef, staging_root: str) -> Any:
    """Apply a plan given as plain dicts to the staged orders."""

    def _fix(*actions: dict[str, Any]) -> tuple[Any, dict[str, DatasetRef]]:
        plan = FixPlan.model_validate({"actions": list(actions)})
        return apply_fix_plan(
            orders,
            plan,
            output_uri=f"{staging_root}/run/fix/orders_fixed",
            quarantine_uri=lambda target: f"{staging_root}/run/fix/quarantine/{target}",
        )

    return _fix


def read(ref: DatasetRef, columns: str = "*") -> list[tuple[Any, ...]]:
    con = staging.connect()
    try:
        return con.execute(f"SELECT {columns} FROM {staging.scan_sql(ref.uri)} ORDER BY id").fetchall()
    finally:
        con.close()


def fixed(result: Any) -> DatasetRef:
    return result.datasets["orders_fixed"]


def rule(column: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"column": column, "op": op, "value": value, **extra}


class TestRenameColumn:
    def test_renames_and_keeps_values_and_order(self, fix):
        result, _ = fix({"action": "rename_column", "column": "code", "to": "sku"})

        assert list(fixed(result).columns) == ["id", "score", "sku", "amount_txt", "flag", "day", "seen"]
        assert [r[0] for r in read(fixed(result), "sku")] == ["A1", "B2", "x", None, "A9", "12"]

    def test_missing_column_fails_naming_the_action(self, fix):
        with pytest.raises(FixPlanNotApplicable, match=r"action #2 \(rename_column\): column 'nope' does not exist"):
            fix(
                {"action": "fill_default", "column": "code", "value": "?"},
                {"action": "rename_column", "column": "nope", "to": "sku"},
            )

    def test_new_name_must_be_free(self, fix):
        with pytest.raises(FixPlanNotApplicable, match="'flag' already exists"):
            fix({"action": "rename_column", "column": "code", "to": "FLAG"})

    def test_later_actions_use_the_new_name(self, fix):
        result, _ = fix(
            {"action": "rename_column", "column": "score", "to": "points"},
            {"action": "fill_default", "column": "points", "value": 0},
        )

        assert [r[0] for r in read(fixed(result), "points")] == [1, 5, 10, 0, 7, 3]


def cast(column: str, to_type: str, fmt: str | None = None) -> dict[str, Any]:
    return {"action": "cast_column", "column": column, "to_type": to_type, "format": fmt}


D, T = dt.date, dt.datetime


class TestCastColumn:
    @pytest.mark.parametrize(
        ("action", "expected", "failures"),
        [
            pytest.param(cast("amount_txt", "integer"), [10, 20, None, None, 5, 8], 1, id="integer"),
            pytest.param(cast("amount_txt", "float"), [10.0, 20.0, None, None, 5.0, 7.5], 1, id="float"),
            pytest.param(cast("score", "string"), ["1", "5", "10", None, "7", "3"], 0, id="string"),
            pytest.param(cast("flag", "boolean"), [True, False, None, None, True, False], 1, id="boolean"),
            pytest.param(
                cast("day", "date"), [D(2024, 1, 5), None, None, None, D(2024, 2, 29), D(2024, 3, 1)], 2, id="date"
            ),
            pytest.param(
                cast("day", "date", "%d/%m/%Y"), [None, D(2024, 1, 5), None, None, None, None], 4, id="date-format"
            ),
            pytest.param(
                cast("seen", "timestamp", "%d/%m/%Y %H:%M"),
                [T(2024, 1, 5, 10, 30), T(2024, 1, 6, 11, 0), None, None, None, T(2023, 12, 31, 23, 59)],
                2,
                id="timestamp-format",
            ),
        ],
    )
    def test_cast_turns_failures_into_counted_nulls(self, fix, action, expected, failures):
        result, _ = fix(action)

        column = action["column"]
        assert [r[0] for r in read(fixed(result), column)] == expected
        assert fixed(result).columns[column] == action["to_type"]
        assert result.metrics["cast_failures"] == {column: failures}
        assert result.metrics["rows_after"] == 6

    def test_rows_removed_earlier_are_not_counted_as_failures(self, fix):
        result, _ = fix(
            {"action": "drop_rows", "rule": rule("code", "equals", "x")},
            {"action": "cast_column", "column": "amount_txt", "to_type": "integer"},
        )

        assert result.metrics["cast_failures"] == {"amount_txt": 0}
        assert result.metrics["rows_dropped"] == 1

    def test_bad_format_fails_naming_the_action(self, fix):
        with pytest.raises(FixPlanNotApplicable, match=r"action #1 \(cast_column\): format '%Q'"):
            fix({"action": "cast_column", "column": "day", "to_type": "date", "format": "%Q"})

    def test_missing_column_fails(self, fix):
        with pytest.raises(FixPlanNotApplicable, match="column 'amount' does not exist"):
            fix({"action": "cast_column", "column": "amount", "to_type": "float"})


class TestFillDefault:
    def test_fills_nulls_with_a_typed_value_and_counts_them(self, fix):
        result, _ = fix(
            {"action": "fill_default", "column": "score", "value": 0},
            {"action": "fill_default", "column": "code", "value": "n/a"},
        )

        assert read(fixed(result), "score, code")[3] == (0, "n/a")
        assert [a["rows"] for a in result.metrics["actions_applied"]] == [1, 1]

    def test_value_is_cast_to_the_column_type(self, fix):
        result, _ = fix(
            {"action": "cast_column", "column": "amount_txt", "to_type": "float"},
            {"action": "fill_default", "column": "amount_txt", "value": "0.5"},
        )

        assert [r[0] for r in read(fixed(result), "amount_txt")] == [10.0, 20.0, 0.5, 0.5, 5.0, 7.5]
        assert result.metrics["actions_applied"][1]["rows"] == 2

    def test_value_that_does_not_fit_the_column_fails(self, fix):
        with pytest.raises(
            FixPlanNotApplicable, match=r"action #1 \(fill_default\): value 'lots' is not a valid BIGINT"
        ):
            fix({"action": "fill_default", "column": "score", "value": "lots"})

    def test_quoted_value_stays_data(self, fix):
        evil = "x'); DROP TABLE t; --"

        result, _ = fix({"action": "fill_default", "column": "code", "value": evil})

        assert read(fixed(result), "code")[3] == (evil,)


class TestRowRules:
    @pytest.mark.parametrize(
        ("row_rule", "removed"),
        [
            pytest.param(rule("score", "is_null"), {4}, id="is_null"),
            pytest.param(rule("score", "equals", 5), {2}, id="equals"),
            pytest.param(rule("score", "equals", "5"), {2}, id="equals-text-for-number"),
            pytest.param(rule("score", "not_equals", 5), {1, 3, 5, 6}, id="not_equals"),
            pytest.param(rule("score", "in_list", [1, 10]), {1, 3}, id="in_list"),
            pytest.param(rule("code", "in_list", ["x", "12"]), {3, 6}, id="in_list-text"),
            pytest.param(rule("score", "not_in_list", [1, 10]), {2, 5, 6}, id="not_in_list"),
            pytest.param(rule("score", "lt", 5), {1, 6}, id="lt"),
            pytest.param(rule("score", "le", 5), {1, 2, 6}, id="le"),
            pytest.param(rule("score", "gt", 5), {3, 5}, id="gt"),
            pytest.param(rule("score", "ge", 5), {2, 3, 5}, id="ge"),
            pytest.param(rule("code", "regex_mismatch", "[A-Z][0-9]"), {3, 6}, id="regex_mismatch"),
            pytest.param(rule("code", "not_castable", to_type="integer"), {1, 2, 3, 5}, id="not_castable"),
            pytest.param(rule("day", "not_castable", to_type="date"), {2, 3}, id="not_castable-date"),
        ],
    )
    def test_drop_rows_removes_exactly_the_matching_rows(self, fix, row_rule, removed):
        result, quarantined = fix({"action": "drop_rows", "rule": row_rule})

        assert {r[0] for r in read(fixed(result), "id")} == {1, 2, 3, 4, 5, 6} - removed
        assert result.metrics["rows_dropped"] == len(removed)
        assert result.metrics["rows_after"] == 6 - len(removed)
        assert result.metrics["rows_before"] == 6
        assert result.metrics["rows_quarantined"] == 0
        assert quarantined == {}

    @pytest.mark.parametrize(
        ("row_rule", "message"),
        [
            pytest.param(rule("nope", "is_null"), "column 'nope' does not exist", id="missing-column"),
            pytest.param(rule("code", "not_castable"), "needs to_type", id="not_castable-without-type"),
            pytest.param(rule("score", "lt", [1, 2]), "needs a single value", id="list-for-comparison"),
            pytest.param(rule("score", "equals"), "needs a single value", id="no-value"),
            pytest.param(rule("score", "in_list", []), "non-empty list", id="empty-list"),
            pytest.param(rule("score", "gt", "high"), "not a valid BIGINT", id="value-of-wrong-type"),
            pytest.param(rule("code", "regex_mismatch", "("), "pattern '\\('", id="bad-regex"),
        ],
    )
    def test_rule_that_does_not_fit_fails_naming_the_action(self, fix, row_rule, message):
        with pytest.raises(FixPlanNotApplicable, match=r"action #1 \(drop_rows\)") as caught:
            fix({"action": "drop_rows", "rule": row_rule})

        assert message.replace("\\", "") in str(caught.value)


class TestQuarantineRows:
    def test_quarantined_rows_are_written_as_they_arrived(self, fix):
        result, quarantined = fix(
            {"action": "cast_column", "column": "amount_txt", "to_type": "integer"},
            {"action": "quarantine_rows", "rule": rule("amount_txt", "is_null"), "target": "bad_amounts"},
        )

        assert set(quarantined) == {"bad_amounts"}
        assert result.datasets["bad_amounts"] == quarantined["bad_amounts"]
        assert read(quarantined["bad_amounts"], "id, amount_txt") == [(3, "abc"), (4, None)]
        assert quarantined["bad_amounts"].columns == dict(
            fixed(result).columns, amount_txt="string", quarantine_rule="string"
        )
        assert read(fixed(result), "id, amount_txt") == [(1, 10), (2, 20), (5, 5), (6, 8)]
        assert result.metrics["rows_quarantined"] == 2
        assert result.metrics["cast_failures"] == {"amount_txt": 1}

    def test_each_target_gets_its_rows_and_a_row_goes_to_the_first_match(self, fix, staging_root):
        result, quarantined = fix(
            {"action": "quarantine_rows", "rule": rule("score", "is_null"), "target": "no_score"},
            {"action": "quarantine_rows", "rule": rule("code", "regex_mismatch", "[A-Z][0-9]"), "target": "odd"},
            {"action": "quarantine_rows", "rule": rule("score", "ge", 7), "target": "odd"},
            {"action": "drop_rows", "rule": rule("score", "equals", 1)},
        )

        assert read(quarantined["no_score"], "id") == [(4,)]
        assert read(quarantined["odd"], "id") == [(3,), (5,), (6,)]
        rules = read(quarantined["odd"], "id, quarantine_rule")
        assert rules == [(3, "code regex_mismatch"), (5, "score ge"), (6, "code regex_mismatch")]
        assert quarantined["odd"].uri == f"{staging_root}/run/fix/quarantine/odd"
        assert read(fixed(result), "id") == [(2,)]
        metrics = result.metrics
        assert (metrics["rows_before"], metrics["rows_after"]) == (6, 1)
        assert (metrics["rows_quarantined"], metrics["rows_dropped"]) == (4, 1)
        assert [a["rows"] for a in metrics["actions_applied"]] == [1, 2, 1, 1]

    def test_empty_quarantine_is_still_staged(self, fix):
        _, quarantined = fix(
            {"action": "quarantine_rows", "rule": rule("score", "gt", 100), "target": "huge"},
        )

        assert quarantined["huge"].row_count == 0
        assert "code" in quarantined["huge"].columns

    def test_target_cannot_be_the_fixed_dataset(self, fix):
        with pytest.raises(FixPlanNotApplicable, match="own name"):
            fix({"action": "quarantine_rows", "rule": rule("score", "is_null"), "target": "orders_fixed"})


class TestUnvalidatedPlans:
    def test_names_are_checked_even_when_the_plan_skipped_validation(self, orders, staging_root):
        sneaky = RenameColumn.model_construct(action="rename_column", column="code", to='x" FROM t; --')
        plan = FixPlan.model_construct(actions=[sneaky], rationale="")

        with pytest.raises(FixPlanNotApplicable, match=r"action #1 \(rename_column\): name .* plain identifier"):
            apply_fix_plan(orders, plan, output_uri=f"{staging_root}/fix/orders_fixed", quarantine_uri=str)


class TestResult:
    def test_stage_result_envelope(self, fix, staging_root):
        result, _ = fix(
            {"action": "rename_column", "column": "code", "to": "sku"},
            {"action": "drop_rows", "rule": rule("sku", "is_null")},
        )

        assert (result.stage, result.status) == ("remediate", "success")
        assert fixed(result).uri == f"{staging_root}/run/fix/orders_fixed"
        assert fixed(result).row_count == 5
        assert set(result.metrics) == {
            "actions_applied",
            "rows_before",
            "rows_after",
            "rows_dropped",
            "rows_quarantined",
            "cast_failures",
        }
        assert result.metrics["actions_applied"] == [
            {"action": "rename_column", "column": "code", "rows": None},
            {"action": "drop_rows", "column": "sku", "rows": 1},
        ]
        assert StageResult.from_xcom(result.to_xcom()) == result

    def test_output_folder_must_end_in_a_dataset_name(self, orders, staging_root):
        plan = FixPlan.model_validate({"actions": [{"action": "rename_column", "column": "code", "to": "sku"}]})

        with pytest.raises(ValueError, match="last segment"):
            apply_fix_plan(orders, plan, output_uri=f"{staging_root}/fix/bad-name", quarantine_uri=str)
