"""Idempotence and validation, property-based: generated batches against real SQLite and PostgreSQL.

Promises proved here (hypothesis, ``max_examples`` kept modest so the file runs in well under a minute
per database):

- loading a batch twice leaves the table exactly as loading it once (upsert and replace), and the
  second upsert writes no row;
- upserting overlapping batches one after the other equals upserting their union by key, where the
  *last write wins*: for a key present in several batches the row of the latest batch is kept;
- validation never crashes on a generated frame, and flags every violation injected into a clean one
  (nulls in not_null columns, values outside the list, values out of range, duplicated keys), with
  the exact number of affected rows.

Values cover the edges: 64-bit extreme keys, NULLs everywhere but the key, any unicode text
(surrogates excluded; NUL only on SQLite, PostgreSQL text cannot hold it), floats including NaN,
infinities, -0.0, the smallest subnormal and the largest double, dates from year 1 to 9999.
Equality is the database's: -0.0 equals 0.0, and SQLite stores NaN as NULL (documented limits).
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_agent_provider.contracts import parse_quality_rules
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.exceptions import LoadError
from tests.faults._support import duplicate_keys, query, stage_table, table_digest, table_rows

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string()), ("amount", pa.float64()), ("day", pa.date32())])
KEY = ["id"]
EDGE_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308]
EDGE_FLOATS += [float("nan"), float("inf"), float("-inf"), 0.1, 1e-310]
_names = itertools.count()


def text_values(kind: str) -> st.SearchStrategy[str | None]:
    banned = "" if kind == "sqlite" else "\x00"
    alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters=banned)
    return st.one_of(st.none(), st.text(alphabet=alphabet, max_size=24))


FLOATS = st.one_of(st.none(), st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
DATES = st.one_of(st.none(), st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
KEYS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-50, 50))


def batches(kind: str, max_size: int = 30) -> st.SearchStrategy[dict[int, tuple[Any, ...]]]:
    """key -> (label, amount, day): keys are unique within a batch, as a load requires."""
    return st.dictionaries(KEYS, st.tuples(text_values(kind), FLOATS, DATES), max_size=max_size)


def as_table(batch: dict[int, tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*batch.values(), strict=True)) if batch else [[], [], []]
    return pa.table([list(batch), *map(list, columns)], schema=SCHEMA)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def staging_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="aap-props-") as folder:
        yield folder


@pytest.fixture(scope="module")
def engines(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sa.Engine]]:
    """Module-wide warehouses (hypothesis runs many examples per test; each uses fresh table names)."""
    found = {
        "sqlite": sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('props') / 'warehouse.db'}"),
        "postgresql": sa.create_engine(pg_server_url),
    }
    yield found
    for engine in found.values():
        engine.dispose()


def fresh_table(engine: sa.Engine, *, create: bool = False) -> str:
    """A table name no example used before; ``create`` makes it with the batch schema and its key."""
    name = f"prop_{next(_names)}"
    if create:
        real, day = ("REAL", "TEXT") if engine.dialect.name == "sqlite" else ("DOUBLE PRECISION", "DATE")
        query(engine, f'CREATE TABLE "{name}" (id BIGINT PRIMARY KEY, label TEXT, amount {real}, day {day})')
    return name


def load(engine: sa.Engine, root: str, batch: dict[int, tuple[Any, ...]], table: str, strategy: str) -> Any:
    ref = stage_table(root, as_table(batch), describe=False)
    return load_dataset(ref, engine=engine, target_table=table, load_strategy=strategy, upsert_key=KEY)  # type: ignore[arg-type]


def drop(engine: sa.Engine, *names: str) -> None:
    for name in names:
        query(engine, f'DROP TABLE IF EXISTS "{name}"')


WAREHOUSES = pytest.mark.parametrize("kind", ["sqlite", "postgresql"])


# ---------------------------------------------------------------------------------------------- loads


@WAREHOUSES
class TestLoadingTwiceEqualsLoadingOnce:
    @SETTINGS
    @given(data=st.data())
    def test_upsert(self, kind: str, engines: dict[str, sa.Engine], staging_dir: str, data: st.DataObject) -> None:
        engine, batch = engines[kind], data.draw(batches(kind))
        table = fresh_table(engine)
        try:
            load(engine, staging_dir, batch, table, "upsert")
            once = table_digest(engine, table)
            again = load(engine, staging_dir, batch, table, "upsert")
            assert table_digest(engine, table) == once
            assert (again.metrics["rows_inserted"], again.metrics["rows_updated"]) == (0, 0)
            assert duplicate_keys(engine, table, KEY) == 0
        finally:
            drop(engine, table)

    @SETTINGS
    @given(data=st.data())
    def test_replace(self, kind: str, engines: dict[str, sa.Engine], staging_dir: str, data: st.DataObject) -> None:
        engine, earlier, batch = engines[kind], data.draw(batches(kind)), data.draw(batches(kind))
        table = fresh_table(engine)
        try:
            load(engine, staging_dir, earlier, table, "replace")
            load(engine, staging_dir, batch, table, "replace")
            once = table_digest(engine, table)
            load(engine, staging_dir, batch, table, "replace")
            assert table_digest(engine, table) == once
            assert len(table_rows(engine, table)) == len(batch)
        finally:
            drop(engine, table)


@WAREHOUSES
class TestUpsertIsLastWriteWinsByKey:
    @SETTINGS
    @given(data=st.data())
    def test_overlapping_batches_equal_the_upsert_of_their_union(
        self, kind: str, engines: dict[str, sa.Engine], staging_dir: str, data: st.DataObject
    ) -> None:
        engine = engines[kind]
        first = data.draw(batches(kind))
        # the second batch reuses some of the first batch's keys, so the batches overlap
        reused = data.draw(st.lists(st.sampled_from(sorted(first)), unique=True) if first else st.just([]))
        second = {
            **data.draw(batches(kind)),
            **{k: data.draw(st.tuples(text_values(kind), FLOATS, DATES)) for k in reused},
        }
        union = {**first, **second}  # last write wins: the second batch's row for a shared key
        one_by_one, at_once = fresh_table(engine, create=True), fresh_table(engine, create=True)
        try:
            load(engine, staging_dir, first, one_by_one, "upsert")
            load(engine, staging_dir, second, one_by_one, "upsert")
            load(engine, staging_dir, union, at_once, "upsert")
            assert table_rows(engine, one_by_one) == table_rows(engine, at_once)
            assert len(table_rows(engine, one_by_one)) == len(union)
            assert duplicate_keys(engine, one_by_one, KEY) == 0
        finally:
            drop(engine, one_by_one, at_once)


class TestTextPostgresCannotHold:
    def test_a_nul_character_fails_the_load_and_leaves_the_table_as_it_was(
        self, engines: dict[str, sa.Engine], staging_dir: str
    ) -> None:
        engine = engines["postgresql"]
        table = fresh_table(engine, create=True)
        try:
            load(engine, staging_dir, {1: ("kept", 1.0, None)}, table, "upsert")
            before = table_digest(engine, table)
            with pytest.raises(LoadError, match=rf"{table}.*0x00"):
                load(engine, staging_dir, {1: ("a\x00b", 2.0, None), 2: ("new", 3.0, None)}, table, "upsert")
            assert table_digest(engine, table) == before
        finally:
            drop(engine, table)


# ---------------------------------------------------------------------------------------------- validation

STATUSES = ["new", "paid", "refunded"]
RULES = parse_quality_rules(
    [
        {"rule": "not_null", "column": "id"},
        {"rule": "not_null", "column": "user_id"},
        {"rule": "unique", "column": "id"},
        {"rule": "in_list", "column": "status", "values": STATUSES},
        {"rule": "range", "column": "amount", "min": 0, "max": 1000},
    ]
)
CLEAN_ROWS = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.sampled_from(STATUSES),
        st.floats(0, 1000, allow_nan=False),
        st.text(max_size=12),
    ),
    min_size=2,
    max_size=60,
)
OUT_OF_RANGE = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False), st.floats(min_value=1000.001), st.just(float("nan"))
)
NOT_A_STATUS = st.text(min_size=0, max_size=10).filter(lambda s: s not in STATUSES)


def positions(rows: int) -> st.SearchStrategy[set[int]]:
    return st.sets(st.integers(0, rows - 1), max_size=rows // 2)


class TestValidationFlagsEveryInjectedViolation:
    @SETTINGS
    @given(data=st.data())
    def test_exact_issues_and_affected_rows(self, staging_dir: str, data: st.DataObject) -> None:
        rows = data.draw(CLEAN_ROWS)
        n = len(rows)
        ids, users = list(range(n)), [r[0] for r in rows]
        statuses, amounts, notes = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
        nulls = data.draw(positions(n), label="null user_id")
        for i in nulls:
            users[i] = None
        bad_status = data.draw(positions(n), label="status not in list")
        for i in bad_status:
            statuses[i] = data.draw(NOT_A_STATUS)
        out_of_range = data.draw(positions(n), label="amount out of range")
        for i in out_of_range:
            amounts[i] = data.draw(OUT_OF_RANGE)
        copies = data.draw(st.sets(st.integers(1, n - 1), max_size=n // 2), label="rows copying id 0")
        for i in copies:
            ids[i] = 0
        expected = {
            "not_null_violation": len(nulls),
            "value_not_in_list": len(bad_status),
            "out_of_range": len(out_of_range),
            "duplicate_values": len(copies) + 1 if copies else 0,
        }
        frame = {"id": ids, "user_id": users, "status": statuses, "amount": amounts, "note": notes}
        result = validate_dataset(
            stage_table(staging_dir, frame, describe=False), dataset="orders", quality_rules=RULES
        )
        found = {issue.type: issue.affected_rows for issue in result.issues}
        assert found == {kind: count for kind, count in expected.items() if count}
        assert result.status == ("fail" if any(expected.values()) else "pass")

    @SETTINGS
    @given(
        frame=st.dictionaries(
            st.sampled_from(["id", "user_id", "status", "amount", "note", "Id", "weird col", "ünï"]),
            st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=3, max_size=3)
            | st.lists(st.one_of(st.none(), st.floats()), min_size=3, max_size=3)
            | st.lists(text_values("sqlite"), min_size=3, max_size=3)
            | st.lists(st.one_of(st.none(), st.booleans()), min_size=3, max_size=3)
            | st.lists(st.none(), min_size=3, max_size=3),
            min_size=1,
        )
    )
    def test_never_crashes_on_a_generated_frame(self, staging_dir: str, frame: dict[str, list[Any]]) -> None:
        schema = {"id": "integer", "user_id": "integer", "status": "string", "amount": "float"}
        table = pa.table({name: pa.array(values) for name, values in frame.items()})
        result = validate_dataset(
            stage_table(staging_dir, table, describe=False),
            dataset="orders",
            expected_schema=schema,
            quality_rules=RULES,
            fail_on_null_rate_exceeds=0.5,
        )
        assert result.status in ("pass", "fail")
        assert result.metrics["row_count"] == 3
        missing = {name for name in schema if name not in frame}
        assert missing <= {i.column for i in result.issues if i.type == "missing_column"}
