"""The load engine against real SQLite and real PostgreSQL: contents, lifecycle, safety, rollback."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.load import Progress, load_dataset
from airflow_agent_provider.exceptions import LoadError, SchemaConflict, UnsafeIdentifier
from tests.support.staging import Stage

DAY = dt.date(2026, 11, 10)
NEXT_DAY = dt.date(2026, 11, 11)


def run(engine: sa.Engine, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        result = conn.exec_driver_sql(sql, params)
        return [tuple(r) for r in result] if result.returns_rows else []


def rows(engine: sa.Engine, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    """The table's rows in a stable order (NULLs last in each column)."""
    return sorted(run(engine, f'SELECT {columns} FROM "{table}"'), key=lambda r: [(v is None, v or 0) for v in r])


def checksum(engine: sa.Engine, table: str) -> str:
    return hashlib.sha256(repr(rows(engine, table)).encode()).hexdigest()


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def daily(user_ids: list[int], clicks: list[int], day: dt.date = DAY) -> dict[str, Any]:
    return {"user_id": user_ids, "date": [day] * len(user_ids), "clicks": clicks}


KEY = ["user_id", "date"]
DAILY_COLUMNS = 'user_id, CAST("date" AS TEXT), clicks'


class TestCreateAndInsert:
    def test_missing_table_is_created_from_the_logical_types(self, engine: sa.Engine, stage: Stage) -> None:
        ref = stage(
            {
                "n": pa.array([1], pa.int32()),
                "x": [1.5],
                "s": ["a"],
                "b": [True],
                "d": [DAY],
                "ts": [dt.datetime(2026, 11, 10, 8, 30)],
            }
        )
        result = load_dataset(ref, engine=engine, target_table="facts")
        declared = {c["name"]: str(c["type"]).upper() for c in sa.inspect(engine).get_columns("facts")}
        if engine.dialect.name == "sqlite":
            expected = {"n": "BIGINT", "x": "REAL", "s": "TEXT", "b": "INTEGER", "d": "TEXT", "ts": "TEXT"}
        else:
            expected = {
                "n": "BIGINT",
                "x": "DOUBLE PRECISION",
                "s": "TEXT",
                "b": "BOOLEAN",
                "d": "DATE",
                "ts": "TIMESTAMP",
            }
        assert declared == expected
        assert result.stage == "load" and result.status == "success"
        assert result.metrics["table_created"] is True
        assert result.metrics["rows_loaded"] == 1
        assert result.metrics["load_validation"] == {
            "row_count_match": True,
            "schema_match": True,
            "no_duplicates": True,
        }

    def test_insert_appends_to_the_existing_rows(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2], [10, 20])), engine=engine, target_table="ued")
        result = load_dataset(stage(daily([3], [30])), engine=engine, target_table="ued")
        assert rows(engine, "ued", DAILY_COLUMNS) == [
            (1, "2026-11-10", 10),
            (2, "2026-11-10", 20),
            (3, "2026-11-10", 30),
        ]
        assert result.metrics["table_created"] is False
        assert result.metrics["rows_inserted"] == 1
        assert result.metrics["snapshot_created"] is None

    def test_a_new_table_gets_the_key_as_primary_key(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        assert sa.inspect(engine).get_pk_constraint("ued")["constrained_columns"] == KEY

    def test_insert_with_a_key_that_duplicates_existing_rows_fails_the_check(
        self, engine: sa.Engine, stage: Stage
    ) -> None:
        run(engine, 'CREATE TABLE ued (user_id BIGINT, "date" DATE, clicks BIGINT)')
        run(engine, "INSERT INTO ued VALUES (1, '2026-11-10', 10)")
        before = checksum(engine, "ued")
        with pytest.raises(LoadError, match="no_duplicates"):
            load_dataset(stage(daily([1, 2], [11, 20])), engine=engine, target_table="ued", upsert_key=KEY)
        assert checksum(engine, "ued") == before

    def test_reserved_words_are_usable_names(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage({"group": [1], "from": ["x"]}), engine=engine, target_table="order")
        assert rows(engine, "order") == [(1, "x")]


class TestUpsert:
    def test_new_keys_are_inserted_and_changed_keys_updated(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2, 3], [10, 20, 30])), engine=engine, target_table="ued", upsert_key=KEY)
        result = load_dataset(
            stage(daily([2, 3, 4], [20, 33, 40])),
            engine=engine,
            target_table="ued",
            load_strategy="upsert",
            upsert_key=KEY,
        )
        assert rows(engine, "ued", DAILY_COLUMNS) == [
            (1, "2026-11-10", 10),
            (2, "2026-11-10", 20),
            (3, "2026-11-10", 33),
            (4, "2026-11-10", 40),
        ]
        assert (result.metrics["rows_inserted"], result.metrics["rows_updated"]) == (1, 1)
        assert result.metrics["load_validation"]["row_count_match"] is True

    def test_upserting_the_same_dataset_twice_leaves_the_table_identical(self, engine: sa.Engine, stage: Stage) -> None:
        ref = stage(daily([1, 2, 3], [10, 20, 30]), daily([1, 2], [11, 21], NEXT_DAY))
        load_dataset(ref, engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        first = checksum(engine, "ued")
        again = load_dataset(ref, engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        assert checksum(engine, "ued") == first
        assert len(rows(engine, "ued")) == 5
        assert (again.metrics["rows_inserted"], again.metrics["rows_updated"]) == (0, 0)

    def test_a_table_without_a_unique_key_gets_a_unique_index(self, engine: sa.Engine, stage: Stage) -> None:
        run(engine, 'CREATE TABLE ued (user_id BIGINT, "date" DATE, clicks BIGINT)')
        run(engine, "INSERT INTO ued VALUES (1, '2026-11-10', 10)")
        load_dataset(
            stage(daily([1, 2], [11, 20])), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY
        )
        assert rows(engine, "ued", DAILY_COLUMNS) == [(1, "2026-11-10", 11), (2, "2026-11-10", 20)]
        unique = [i["column_names"] for i in sa.inspect(engine).get_indexes("ued") if i["unique"]]
        assert unique == [KEY]

    def test_a_table_already_holding_duplicate_keys_is_refused(self, engine: sa.Engine, stage: Stage) -> None:
        run(engine, 'CREATE TABLE ued (user_id BIGINT, "date" DATE, clicks BIGINT)')
        run(engine, "INSERT INTO ued VALUES (7, '2026-11-10', 1), (7, '2026-11-10', 2)")
        before = checksum(engine, "ued")
        with pytest.raises(LoadError, match=r"no unique key .* holds 2 rows for \(7, 2026-11-10\)"):
            load_dataset(
                stage(daily([1], [1])), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY
            )
        assert checksum(engine, "ued") == before
        assert not [i for i in sa.inspect(engine).get_indexes("ued") if i["unique"]]

    def test_duplicate_staged_keys_are_refused_before_writing(self, engine: sa.Engine, stage: Stage) -> None:
        ref = stage(daily([7, 7, 8, 8, 9, 9, 1], [1, 2, 3, 4, 5, 6, 7]))
        with pytest.raises(LoadError, match=r"3 duplicate keys for \(user_id, date\).*e\.g\. \(\d, 2026-11-10\)"):
            load_dataset(ref, engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        assert "ued" not in tables(engine)

    def test_null_keys_are_refused_before_writing(self, engine: sa.Engine, stage: Stage) -> None:
        ref = stage({"user_id": pa.array([1, None], pa.int64()), "date": [DAY, DAY], "clicks": [1, 2]})
        with pytest.raises(LoadError, match=r"1 staged rows .* NULL in the key"):
            load_dataset(ref, engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        assert "ued" not in tables(engine)

    def test_a_key_missing_from_the_data_is_refused(self, engine: sa.Engine, stage: Stage) -> None:
        with pytest.raises(LoadError, match=r"upsert_key \['day'\]"):
            load_dataset(
                stage(daily([1], [1])), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=["day"]
            )

    @pytest.mark.parametrize("key", [None, []], ids=["none", "empty"])
    def test_upsert_without_a_key_is_an_argument_error(self, engine: sa.Engine, stage: Stage, key: Any) -> None:
        with pytest.raises(ValueError, match="needs upsert_key"):
            load_dataset(
                stage(daily([1], [1])), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=key
            )


class TestReplace:
    def test_replace_swaps_the_contents_and_keeps_the_table(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2, 3], [10, 20, 30])), engine=engine, target_table="ued")
        run(engine, "CREATE INDEX ued_clicks ON ued (clicks)")
        result = load_dataset(stage(daily([4], [40])), engine=engine, target_table="ued", load_strategy="replace")
        assert rows(engine, "ued", DAILY_COLUMNS) == [(4, "2026-11-10", 40)]
        assert [i["name"] for i in sa.inspect(engine).get_indexes("ued")] == ["ued_clicks"]
        assert (result.metrics["rows_deleted"], result.metrics["rows_inserted"]) == (3, 1)

    def test_replacing_twice_leaves_the_table_identical(self, engine: sa.Engine, stage: Stage) -> None:
        ref = stage(daily([1, 2], [10, 20]))
        load_dataset(stage(daily([9], [90])), engine=engine, target_table="ued")
        load_dataset(ref, engine=engine, target_table="ued", load_strategy="replace", upsert_key=KEY)
        first = checksum(engine, "ued")
        load_dataset(ref, engine=engine, target_table="ued", load_strategy="replace", upsert_key=KEY)
        assert checksum(engine, "ued") == first
        assert len(rows(engine, "ued")) == 2


class TestSnapshot:
    def test_the_snapshot_holds_the_contents_before_the_load(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2], [10, 20])), engine=engine, target_table="ued")
        before = rows(engine, "ued")
        result = load_dataset(
            stage(daily([3], [30])),
            engine=engine,
            target_table="ued",
            load_strategy="replace",
            create_snapshot_before_load=True,
        )
        name = result.metrics["snapshot_created"]
        assert name.startswith("ued__snapshot_")
        assert rows(engine, name) == before
        assert len(rows(engine, "ued")) == 1

    def test_a_snapshot_of_the_same_name_is_replaced(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued")
        for clicks in (20, 30):
            load_dataset(
                stage(daily([1], [clicks])),
                engine=engine,
                target_table="ued",
                load_strategy="upsert",
                upsert_key=KEY,
                create_snapshot_before_load=True,
                snapshot_name="ued_before_run",
            )
        assert rows(engine, "ued_before_run", "clicks") == [(20,)]
        assert rows(engine, "ued", "clicks") == [(30,)]

    def test_no_snapshot_when_the_table_does_not_exist_yet(self, engine: sa.Engine, stage: Stage) -> None:
        result = load_dataset(
            stage(daily([1], [10])), engine=engine, target_table="ued", create_snapshot_before_load=True
        )
        assert result.metrics["snapshot_created"] is None
        assert tables(engine) == {"ued"}

    def test_a_snapshot_named_like_the_target_is_refused(self, engine: sa.Engine, stage: Stage) -> None:
        with pytest.raises(ValueError, match="is the target table itself"):
            load_dataset(
                stage(daily([1], [10])),
                engine=engine,
                target_table="ued",
                create_snapshot_before_load=True,
                snapshot_name="ued",
            )


class TestSchemaEvolution:
    def test_a_new_column_is_added_as_nullable(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued", upsert_key=KEY)
        result = load_dataset(
            stage(daily([2], [20]) | {"country": ["DE"]}),
            engine=engine,
            target_table="ued",
            load_strategy="upsert",
            upsert_key=KEY,
        )
        assert result.metrics["columns_added"] == ["country"]
        assert rows(engine, "ued", "user_id, country") == [(1, None), (2, "DE")]

    def test_a_column_the_data_no_longer_has_is_kept_and_warned_about(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2], [10, 20])), engine=engine, target_table="ued", upsert_key=KEY)
        without_clicks = {"user_id": [2, 3], "date": [DAY, DAY]}

        result = load_dataset(
            stage(without_clicks), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY
        )

        assert result.metrics["columns_not_written"] == ["clicks"]
        assert result.metrics["load_validation"]["schema_match"] is True  # of the columns written
        assert result.warnings == [
            "target ued has column(s) this load does not write: clicks (the staged data lacks them): updated rows "
            "keep their old values there and new rows get NULL (or the column default); drop or fill them if they "
            "are gone for good"
        ]
        assert rows(engine, "ued", "user_id, clicks") == [(1, 10), (2, 20), (3, None)]

    def test_a_load_writing_every_column_warns_about_nothing(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued", upsert_key=KEY)
        result = load_dataset(stage(daily([2], [20])), engine=engine, target_table="ued", upsert_key=KEY)
        assert (result.metrics["columns_not_written"], result.warnings) == ([], [])

    def test_an_incompatible_type_raises_schema_conflict_and_writes_nothing(
        self, engine: sa.Engine, stage: Stage
    ) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued", upsert_key=KEY)
        before = checksum(engine, "ued")
        ref = stage({"user_id": [2], "date": [DAY], "clicks": ["many"], "extra": [1]})
        with pytest.raises(SchemaConflict, match=r"table ued column clicks: existing type (BIGINT|bigint).*string"):
            load_dataset(ref, engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        assert checksum(engine, "ued") == before
        assert [c["name"] for c in sa.inspect(engine).get_columns("ued")] == ["user_id", "date", "clicks"]

    def test_a_date_cannot_go_into_an_integer_column(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage({"id": [1], "n": [5]}), engine=engine, target_table="t")
        with pytest.raises(SchemaConflict, match=r"column n: existing type .* incoming date"):
            load_dataset(stage({"id": [2], "n": [DAY]}), engine=engine, target_table="t")
        assert rows(engine, "t") == [(1, 5)]

    def test_text_that_casts_goes_into_an_integer_column(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage({"id": [1], "n": [5]}), engine=engine, target_table="t")
        load_dataset(stage({"id": [2, 3], "n": ["42", None]}), engine=engine, target_table="t")
        assert rows(engine, "t") == [(1, 5), (2, 42), (3, None)]

    def test_whole_floats_go_into_an_integer_column_fractions_do_not(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage({"id": [1], "n": [5]}), engine=engine, target_table="t")
        load_dataset(stage({"id": [2], "n": [7.0]}), engine=engine, target_table="t")
        with pytest.raises(SchemaConflict, match=r"1 values do not convert, e\.g\. '7\.5'"):
            load_dataset(stage({"id": [3, 4], "n": [8.0, 7.5]}), engine=engine, target_table="t")
        assert rows(engine, "t") == [(1, 5), (2, 7)]


UNSAFE_TABLES = ["users; DROP TABLE x", "a-b", "../x", '"quoted"', "a.b.c", "", "x" * 64, "1abc", "tab\tle"]


class TestIdentifiers:
    @pytest.fixture
    def sentinel(self, engine: sa.Engine, stage: Stage) -> Callable[[], tuple[set[str], str]]:
        load_dataset(stage({"id": [1, 2]}), engine=engine, target_table="x")
        return lambda: (tables(engine), checksum(engine, "x"))

    @pytest.mark.parametrize("target", UNSAFE_TABLES)
    def test_unsafe_table_names_are_refused_and_the_warehouse_is_intact(
        self, engine: sa.Engine, stage: Stage, sentinel: Callable[[], Any], target: str
    ) -> None:
        before = sentinel()
        with pytest.raises(UnsafeIdentifier) as raised:
            load_dataset(stage({"id": [3]}), engine=engine, target_table=target)
        assert repr(target) in str(raised.value)
        assert sentinel() == before

    @pytest.mark.parametrize("column", ['x"; DROP TABLE x; --', "a b", "1st", "naïve", "a-b"])
    def test_unsafe_column_names_in_the_data_are_refused(
        self, engine: sa.Engine, stage: Stage, sentinel: Callable[[], Any], column: str
    ) -> None:
        before = sentinel()
        with pytest.raises(UnsafeIdentifier) as raised:
            load_dataset(stage({"id": [3], column: [1]}), engine=engine, target_table="x")
        assert repr(column) in str(raised.value)
        assert sentinel() == before

    @pytest.mark.parametrize(
        "arguments",
        [
            pytest.param({"load_strategy": "upsert", "upsert_key": ["id; DROP TABLE x"]}, id="key"),
            pytest.param({"create_snapshot_before_load": True, "snapshot_name": "s; DROP TABLE x"}, id="snapshot"),
        ],
    )
    def test_unsafe_key_and_snapshot_names_are_refused(
        self, engine: sa.Engine, stage: Stage, sentinel: Callable[[], Any], arguments: dict[str, Any]
    ) -> None:
        before = sentinel()
        with pytest.raises(UnsafeIdentifier, match="DROP TABLE x"):
            load_dataset(stage({"id": [3]}), engine=engine, target_table="x", **arguments)
        assert sentinel() == before


def _extra_row_trigger(engine: sa.Engine) -> None:
    """A trigger that sneaks a row in during the merge, so the row-count check must fail."""
    if engine.dialect.name == "sqlite":
        run(
            engine,
            "CREATE TRIGGER ghost AFTER INSERT ON ued WHEN NEW.user_id = 2 BEGIN "
            "INSERT INTO ued (user_id, date, clicks) VALUES (999, '2026-11-10', 0); END",
        )
        return
    run(
        engine,
        "CREATE FUNCTION ghost() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.user_id = 2 THEN INSERT INTO ued (user_id, date, clicks) VALUES (999, '2026-11-10', 0); END IF; "
        "RETURN NEW; END $$",
    )
    run(engine, "CREATE TRIGGER ghost AFTER INSERT ON ued FOR EACH ROW EXECUTE FUNCTION ghost()")


def _failing_trigger(engine: sa.Engine) -> None:
    """A trigger that raises when the merge updates a row."""
    if engine.dialect.name == "sqlite":
        run(engine, "CREATE TRIGGER boom AFTER UPDATE ON ued BEGIN SELECT RAISE(ABORT, 'boom'); END")
        return
    run(engine, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$")
    run(engine, "CREATE TRIGGER boom AFTER UPDATE ON ued FOR EACH ROW EXECUTE FUNCTION boom()")


class TestTransaction:
    def test_a_failed_check_after_the_merge_rolls_everything_back(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued")
        _extra_row_trigger(engine)
        before, names = checksum(engine, "ued"), tables(engine)
        with pytest.raises(LoadError, match="row_count_match"):
            load_dataset(
                stage(daily([2, 3], [20, 30]) | {"country": ["DE", "FR"]}),
                engine=engine,
                target_table="ued",
                create_snapshot_before_load=True,
                snapshot_name="ued_snap",
            )
        assert checksum(engine, "ued") == before
        assert tables(engine) == names  # no snapshot left behind
        assert [c["name"] for c in sa.inspect(engine).get_columns("ued")] == ["user_id", "date", "clicks"]

    def test_an_error_during_the_merge_rolls_everything_back(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1, 2], [10, 20])), engine=engine, target_table="ued", upsert_key=KEY)
        _failing_trigger(engine)
        before = checksum(engine, "ued")
        with pytest.raises(LoadError, match=r"rolled back: .*boom"):
            load_dataset(
                stage(daily([2, 3], [21, 30])),
                engine=engine,
                target_table="ued",
                load_strategy="upsert",
                upsert_key=KEY,
            )
        assert checksum(engine, "ued") == before

    def test_the_connection_is_usable_after_a_rollback(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued", upsert_key=KEY)
        with pytest.raises(SchemaConflict):
            load_dataset(stage(daily([2], ["x"])), engine=engine, target_table="ued")
        load_dataset(stage(daily([2], [20])), engine=engine, target_table="ued")
        assert len(rows(engine, "ued")) == 2


TRICKY_TEXT = [
    "plain",
    "",
    None,
    "quote \" and 'apostrophe'",
    "comma, separated",
    "new\nline",
    "crlf\r\nline",
    "back\\slash",
    "\\.",
    "\\N",
    "NULL",
    "ünïcödé — 日本語 🚀",
    "  padded  ",
]


def _as_python(row: tuple[Any, ...], sqlite: bool) -> tuple[Any, ...]:
    """SQLite holds booleans as 0/1 and dates and timestamps as ISO text: read them back as Python values."""
    row_id, text, x, big, flag, day, at = row
    flag = None if flag is None else bool(flag)
    if sqlite:
        day = None if day is None else dt.date.fromisoformat(day)
        at = None if at is None else dt.datetime.fromisoformat(at)
    return row_id, text, x, big, flag, day, at


class TestValues:
    def test_values_round_trip_exactly(self, engine: sa.Engine, stage: Stage) -> None:
        n = len(TRICKY_TEXT)
        floats = [1.5, math.nan, math.inf, -math.inf, None, 0.1 + 0.2, 1e-300, -0.0, 1e308, 2.5, 3.5, 4.5, 5.5]
        stamps = [dt.datetime(2026, 11, 10, 1, 2, 3, 456789), dt.datetime(1970, 1, 1), None]
        data = {
            "id": list(range(n)),
            "text": TRICKY_TEXT,
            "x": floats,
            "big": [2**62, -(2**62)] + [None] * (n - 2),
            "flag": [True, False, None] * 4 + [True],
            "day": [DAY, dt.date(1999, 12, 31), None] * 4 + [DAY],
            "at": stamps * 4 + [dt.datetime(2026, 1, 1, 0, 0, 0, 1000)],
        }
        load_dataset(stage(data), engine=engine, target_table="vals")
        sqlite = engine.dialect.name == "sqlite"
        got = [_as_python(r, sqlite) for r in sorted(run(engine, "SELECT id, text, x, big, flag, day, at FROM vals"))]
        assert [r[0] for r in got] == data["id"]
        for name, column in zip(["text", "big", "flag", "day", "at"], [1, 3, 4, 5, 6], strict=True):
            assert [r[column] for r in got] == data[name], name
        for x, want in zip([r[2] for r in got], data["x"], strict=True):
            if want is not None and math.isnan(want):
                assert x is None if sqlite else math.isnan(x)  # SQLite stores NaN as NULL
            else:  # SQLite keeps whole REALs as integers on disk, so -0.0 comes back as 0.0
                assert x == want
                assert x is None or sqlite or math.copysign(1, x) == math.copysign(1, want)

    def test_timestamps_with_a_time_zone_are_stored_as_utc(self, engine: sa.Engine, stage: Stage) -> None:
        paris = pa.array([dt.datetime(2026, 11, 10, 11, 0, tzinfo=dt.UTC)], pa.timestamp("us", tz="Europe/Paris"))
        load_dataset(stage({"at": paris}), engine=engine, target_table="tz")
        (stored,) = run(engine, "SELECT at FROM tz")[0]
        assert str(stored) == "2026-11-10 11:00:00"

    def test_an_empty_dataset_creates_the_table_and_replace_empties_it(self, engine: sa.Engine, stage: Stage) -> None:
        writer = staging.DatasetWriter(f"{stage(daily([1], [1])).uri}_empty")
        empty = writer.finish(pa.schema([("user_id", pa.int64()), ("date", pa.date32()), ("clicks", pa.int64())]))
        result = load_dataset(empty, engine=engine, target_table="ued", upsert_key=KEY)
        assert result.metrics["table_created"] is True and rows(engine, "ued") == []
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued")
        load_dataset(empty, engine=engine, target_table="ued", load_strategy="replace")
        assert rows(engine, "ued") == []

    def test_an_all_null_column_fits_a_new_or_an_existing_column(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage({"id": [1], "n": [5]}), engine=engine, target_table="t")
        load_dataset(stage({"id": [2], "n": pa.nulls(1), "note": pa.nulls(1)}), engine=engine, target_table="t")
        assert rows(engine, "t") == [(1, 5, None), (2, None, None)]

    def test_several_batches_and_parts_load_exactly_once(self, engine: sa.Engine, stage: Stage) -> None:
        parts = [daily(list(range(start, start + 25)), [start] * 25) for start in (0, 25, 50)]
        result = load_dataset(stage(*parts), engine=engine, target_table="ued", upsert_key=KEY, batch_rows=7)
        assert rows(engine, "ued", "user_id") == [(i,) for i in range(75)]
        assert result.metrics["rows_loaded"] == 75
        upsert = load_dataset(
            stage(*parts), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY, batch_rows=7
        )
        assert len(rows(engine, "ued")) == 75
        assert upsert.metrics["load_validation"]["row_count_match"] is True


class TestTargets:
    def test_a_schema_qualified_target_on_postgresql(self, pg_url: str, stage: Stage) -> None:
        engine = sa.create_engine(pg_url)
        try:
            run(engine, "CREATE SCHEMA analytics")
            result = load_dataset(
                stage(daily([1], [10])),
                engine=engine,
                target_table="analytics.ued",
                load_strategy="upsert",
                upsert_key=KEY,
            )
            assert run(engine, "SELECT user_id, clicks FROM analytics.ued") == [(1, 10)]
            assert result.metrics["target_table"] == "analytics.ued"
            with pytest.raises(LoadError, match=r"schema 'nowhere' of nowhere\.ued does not exist"):
                load_dataset(stage(daily([1], [10])), engine=engine, target_table="nowhere.ued")
        finally:
            run(engine, "DROP SCHEMA IF EXISTS analytics CASCADE")
            engine.dispose()

    def test_a_view_is_not_a_target(self, engine: sa.Engine, stage: Stage) -> None:
        load_dataset(stage(daily([1], [10])), engine=engine, target_table="ued")
        run(engine, "CREATE VIEW ued_view AS SELECT * FROM ued")
        with pytest.raises(LoadError, match="not a table"):
            load_dataset(stage(daily([2], [20])), engine=engine, target_table="ued_view")
        assert len(rows(engine, "ued")) == 1

    def test_postgresql_columns_outside_the_logical_types_are_a_conflict(self, pg_url: str, stage: Stage) -> None:
        engine = sa.create_engine(pg_url)
        run(engine, "CREATE TABLE doc (id BIGINT, body JSONB, tags INTEGER[])")
        for column in ("body", "tags"):
            with pytest.raises(SchemaConflict, match=f"column {column}: existing type"):
                load_dataset(stage({"id": [1], column: ["[1]"]}), engine=engine, target_table="doc")
        assert run(engine, "SELECT count(*) FROM doc") == [(0,)]
        engine.dispose()

    def test_naive_timestamps_go_into_a_timestamptz_column_as_utc(self, pg_url: str, stage: Stage) -> None:
        engine = sa.create_engine(pg_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
        run(engine, "CREATE TABLE ev (id BIGINT, at TIMESTAMPTZ)")
        load_dataset(stage({"id": [1], "at": [dt.datetime(2026, 11, 10, 12, 0)]}), engine=engine, target_table="ev")
        assert run(engine, "SELECT at FROM ev") == [(dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC),)]
        engine.dispose()

    def test_sqlite_targets_take_no_schema(self, sqlite_url: str, stage: Stage) -> None:
        engine = sa.create_engine(sqlite_url)
        with pytest.raises(ValueError, match="plain table name"):
            load_dataset(stage(daily([1], [10])), engine=engine, target_table="other.ued")
        engine.dispose()

    def test_an_unknown_strategy_is_an_argument_error(self, sqlite_url: str, stage: Stage) -> None:
        with pytest.raises(ValueError, match="load_strategy must be one of"):
            load_dataset(
                stage(daily([1], [10])), engine=sa.create_engine(sqlite_url), target_table="ued", load_strategy="merge"
            )  # type: ignore[arg-type]


class TestProgress:
    def test_progress_reports_rows_done_of_total(self) -> None:
        lines: list[str] = []
        progress = Progress("ued", 400_000, lines.append, every=0.0)
        progress.advance(150_000)
        assert lines and lines[0].startswith("ued: 150000/400000 rows (")


class TestLarge:
    def test_a_200k_row_upsert(self, engine: sa.Engine, stage: Stage) -> None:
        n, half = 200_000, 100_000
        ids = np.arange(n, dtype=np.int64)
        existing = pa.table({"user_id": ids[:half], "date": pa.array([DAY] * half), "clicks": ids[:half] % 97})
        load_dataset(stage(existing), engine=engine, target_table="ued", upsert_key=KEY)
        batch = pa.table({"user_id": ids + half // 2, "date": pa.array([DAY] * n), "clicks": np.full(n, 1000)})
        result = load_dataset(stage(batch), engine=engine, target_table="ued", load_strategy="upsert", upsert_key=KEY)
        count, total = run(engine, "SELECT count(*), sum(clicks) FROM ued")[0]
        assert count == n + half // 2
        assert total == int((ids[: half // 2] % 97).sum()) + 1000 * n
        assert (result.metrics["rows_inserted"], result.metrics["rows_updated"]) == (n - half // 2, half // 2)


class TestDrivers:
    def test_a_psycopg3_engine_loads_through_the_psycopg2_copy_path(self, pg_url: str, stage: Stage) -> None:
        # Airflow's PostgresHook hands out postgresql+psycopg engines when psycopg 3 is installed.
        engine = sa.create_engine(pg_url.replace("postgresql+psycopg2://", "postgresql+psycopg://"))
        assert engine.dialect.driver == "psycopg"

        result = load_dataset(
            stage(daily([1, 2], [3, 4])),
            engine=engine,
            target_table="daily",
            load_strategy="upsert",
            upsert_key=["user_id", "date"],
        )

        assert result.metrics["rows_loaded"] == 2
        assert sorted(r[0] for r in rows(engine, "daily", "user_id")) == [1, 2]
        engine.dispose()


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


class TestSqliteConcurrency:
    def test_a_load_waits_for_another_writer_instead_of_failing(self, sqlite_url: str, stage: Stage) -> None:
        """Another process (a parallel backfill run) holds the write lock well past SQLite's 5 s default."""
        import subprocess
        import sys
        import time

        path = sqlite_url.removeprefix("sqlite:///")
        other = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, path, "11"], stdout=subprocess.PIPE, text=True)
        engine = sa.create_engine(sqlite_url)
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "locked"
            started = time.monotonic()
            result = load_dataset(stage(daily([1], [3])), engine=engine, target_table="daily")
            waited = time.monotonic() - started
        finally:
            if other.poll() is None:
                other.kill()  # only on failure: it commits by itself after 11 s
            other.communicate(timeout=30)
        assert other.returncode == 0  # its own COMMIT went through: nobody wrote under its lock
        assert waited > 5
        assert result.metrics["rows_loaded"] == 1
        engine.dispose()


class TestConcurrentFirstLoads:
    def test_parallel_loads_into_a_missing_table_create_it_once_and_all_land(
        self, engine: sa.Engine, stage: Stage
    ) -> None:
        """The first runs of a parallel backfill all find the table missing; none may fail creating it."""
        import threading
        from concurrent.futures import ThreadPoolExecutor

        days = [DAY + dt.timedelta(days=i) for i in range(4)]
        refs = [stage(daily([1, 2, 3], [i, i + 1, i + 2], day)) for i, day in enumerate(days)]
        for table in ("ued_a", "ued_b", "ued_c"):  # the race is a matter of timing: give it three chances
            start = threading.Barrier(len(refs))

            def load(ref: DatasetRef, table: str = table, start: threading.Barrier = start) -> int:
                start.wait()
                result = load_dataset(ref, engine=engine, target_table=table, load_strategy="upsert", upsert_key=KEY)
                return int(result.metrics["rows_loaded"])

            with ThreadPoolExecutor(len(refs)) as pool:
                loaded = list(pool.map(load, refs))
            assert loaded == [3, 3, 3, 3]
            assert len(rows(engine, table)) == 12
            assert sorted({r[1] for r in rows(engine, table, DAILY_COLUMNS)}) == [str(d) for d in days]
