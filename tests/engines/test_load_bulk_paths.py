"""The load engine's bulk-write paths: SQLite's Arrow ingest (ADBC), the rowid key, the key built after COPY,
read-ahead."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from airflow_agent_provider.engines import load_plan
from airflow_agent_provider.engines.load import load_dataset
from airflow_agent_provider.engines.load_plan import read_ahead
from airflow_agent_provider.exceptions import LoadError
from tests.support.staging import Stage


def run(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        result = conn.exec_driver_sql(sql)
        return [tuple(r) for r in result] if result.returns_rows else []


def events(first: int, count: int) -> dict[str, Any]:
    """Rows whose nullable integers, floats, booleans and text have NULLs at different places."""
    ids = list(range(first, first + count))
    return {
        "id": ids,
        "n": pa.array([None if i % 7 == 0 else i * 3 for i in ids], pa.int64()),
        "x": [None if i % 5 == 0 else i / 4 for i in ids],
        "flag": [None if i % 3 == 0 else i % 2 == 0 for i in ids],
        "s": [None if i % 11 == 0 else f"s{i}" for i in ids],
    }


def expected(first: int, count: int) -> list[tuple[Any, ...]]:
    data = events(first, count)
    flags = [None if f is None else int(f) for f in data["flag"]]
    return list(zip(data["id"], data["n"].to_pylist(), data["x"], flags, data["s"], strict=True))


class TestArrowIngest:
    @pytest.mark.parametrize("batch_rows", [1, 700, 50_000], ids=["row-batches", "700-row-batches", "default"])
    def test_every_row_lands_once_with_exact_values(self, sqlite_url: str, stage: Stage, batch_rows: int) -> None:
        engine = sa.create_engine(sqlite_url)
        ref = stage(events(0, 1234), events(1234, 17))  # neither part nor batch a multiple of the other
        result = load_dataset(ref, engine=engine, target_table="ev", upsert_key=["id"], batch_rows=batch_rows)
        got = run(engine, "SELECT id, n, x, flag, s FROM ev ORDER BY id")
        assert got == expected(0, 1251)
        assert run(engine, "SELECT DISTINCT typeof(n) FROM ev ORDER BY 1") == [("integer",), ("null",)]
        assert run(engine, "SELECT DISTINCT typeof(flag) FROM ev ORDER BY 1") == [("integer",), ("null",)]
        assert result.metrics["rows_inserted"] == 1251
        engine.dispose()

    def test_a_wide_table_lands(self, sqlite_url: str, stage: Stage) -> None:
        engine = sa.create_engine(sqlite_url)
        wide = {f"c{j}": list(range(j, j + 300)) for j in range(120)}
        load_dataset(stage(wide), engine=engine, target_table="wide")
        assert run(engine, "SELECT count(*), sum(c119) FROM wide") == [(300, sum(range(119, 419)))]
        engine.dispose()

    def test_an_in_memory_warehouse_is_refused_by_name(self, stage: Stage) -> None:
        engine = sa.create_engine("sqlite://")
        with pytest.raises(ValueError, match="in memory: load_dataset needs a database file"):
            load_dataset(stage(events(0, 3)), engine=engine, target_table="ev")
        engine.dispose()


class TestNewTableKeys:
    def test_a_single_integer_key_is_the_sqlite_rowid(self, sqlite_url: str, stage: Stage) -> None:
        engine = sa.create_engine(sqlite_url)
        load_dataset(stage(events(0, 50)), engine=engine, target_table="ev", load_strategy="upsert", upsert_key=["id"])
        assert run(engine, "SELECT name, type, pk FROM pragma_table_info('ev') WHERE pk > 0") == [("id", "INTEGER", 1)]
        assert run(engine, "SELECT count(*) FROM pragma_index_list('ev')") == [(0,)]  # no second index
        assert run(engine, "SELECT count(*) FROM ev WHERE rowid = id") == [(50,)]
        changed = events(40, 20)
        again = load_dataset(
            stage(changed), engine=engine, target_table="ev", load_strategy="upsert", upsert_key=["id"]
        )
        assert (again.metrics["rows_inserted"], again.metrics["rows_updated"]) == (10, 0)
        assert run(engine, "SELECT id, n, x, flag, s FROM ev ORDER BY id") == expected(0, 60)

    def test_a_text_key_keeps_an_ordinary_primary_key_on_sqlite(self, sqlite_url: str, stage: Stage) -> None:
        engine = sa.create_engine(sqlite_url)
        load_dataset(stage({"code": ["a", "b"], "v": [1, 2]}), engine=engine, target_table="t", upsert_key=["code"])
        assert run(engine, "SELECT name, type, pk FROM pragma_table_info('t') WHERE pk > 0") == [("code", "TEXT", 1)]

    def test_the_key_built_after_the_copy_is_the_primary_key(self, pg_url: str, stage: Stage) -> None:
        engine = sa.create_engine(pg_url)
        result = load_dataset(stage(events(0, 300)), engine=engine, target_table="ev", upsert_key=["id"])
        pk = sa.inspect(engine).get_pk_constraint("ev")
        assert (pk["constrained_columns"], pk["name"]) == (["id"], "ev_pkey")  # the name an inline key gets
        assert result.metrics["load_validation"] == {
            "row_count_match": True,
            "schema_match": True,
            "no_duplicates": True,
        }
        assert run(engine, "SELECT id, n, x, flag, s FROM ev ORDER BY id") == [
            (i, n, x, None if f is None else bool(f), s) for i, n, x, f, s in expected(0, 300)
        ]
        engine.dispose()

    def test_a_key_the_database_refuses_rolls_the_new_table_back(
        self, engine: sa.Engine, stage: Stage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The staged keys are checked first; should duplicates still reach the key build, nothing remains."""
        monkeypatch.setattr(load_plan.Staged, "refuse_bad_keys", lambda self, key, table: None)
        with pytest.raises(LoadError, match="rolled back"):
            load_dataset(stage({"id": [1, 1], "v": [1, 2]}), engine=engine, target_table="dup", upsert_key=["id"])
        assert "dup" not in sa.inspect(engine).get_table_names()


class TestPostgresReplace:
    """A PostgreSQL replace empties the table with TRUNCATE (unless foreign keys or DELETE triggers need a DELETE)
    and builds its key and indexes after the bulk write."""

    def prepared(self, pg_url: str, extra: str = "") -> sa.Engine:
        engine = sa.create_engine(pg_url)
        run(engine, "CREATE TABLE ev (id BIGINT PRIMARY KEY, s TEXT NOT NULL)")
        run(engine, "CREATE INDEX ev_s ON ev (s)")
        run(engine, "INSERT INTO ev SELECT n, 'old ' || n FROM generate_series(1, 40) AS n")
        if extra:
            run(engine, extra)
        return engine

    def indexes(self, engine: sa.Engine) -> list[tuple[Any, ...]]:
        return run(engine, "SELECT indexname FROM pg_indexes WHERE tablename = 'ev' ORDER BY 1")

    def relfilenode(self, engine: sa.Engine) -> int:
        return int(run(engine, "SELECT relfilenode FROM pg_class WHERE relname = 'ev'")[0][0])

    def test_the_table_is_truncated_and_keeps_its_key_and_indexes(self, pg_url: str, stage: Stage) -> None:
        engine = self.prepared(pg_url)
        files = self.relfilenode(engine)
        result = load_dataset(
            stage({"id": [7, 8], "s": ["a", "b"]}), engine=engine, target_table="ev", load_strategy="replace"
        )
        assert run(engine, "SELECT id, s FROM ev ORDER BY id") == [(7, "a"), (8, "b")]
        assert self.relfilenode(engine) != files  # TRUNCATE gave it new files; a DELETE keeps them
        assert (result.metrics["rows_deleted"], result.metrics["rows_inserted"]) == (40, 2)
        assert self.indexes(engine) == [("ev_pkey",), ("ev_s",)]
        engine.dispose()

    def test_a_failed_write_after_the_truncate_brings_the_old_rows_back(self, pg_url: str, stage: Stage) -> None:
        engine = self.prepared(pg_url)
        with pytest.raises(LoadError, match="rolled back"):  # s is NOT NULL: the COPY fails after the TRUNCATE
            load_dataset(stage({"id": [7], "s": [None]}), engine=engine, target_table="ev", load_strategy="replace")
        assert run(engine, "SELECT count(*), min(s) FROM ev") == [(40, "old 1")]
        assert self.indexes(engine) == [("ev_pkey",), ("ev_s",)]  # dropped for the write, restored by the rollback
        engine.dispose()

    def test_the_key_and_indexes_are_built_after_the_write(self, pg_url: str, stage: Stage) -> None:
        engine = self.prepared(pg_url)
        definitions = run(engine, "SELECT indexdef FROM pg_indexes WHERE tablename = 'ev' ORDER BY 1")
        keys = run(engine, "SELECT oid FROM pg_class WHERE relname IN ('ev_pkey', 'ev_s') ORDER BY relname")
        load_dataset(stage({"id": [7, 8], "s": ["a", "b"]}), engine=engine, target_table="ev", load_strategy="replace")
        assert run(engine, "SELECT indexdef FROM pg_indexes WHERE tablename = 'ev' ORDER BY 1") == definitions
        assert run(engine, "SELECT oid FROM pg_class WHERE relname IN ('ev_pkey', 'ev_s') ORDER BY relname") != keys
        assert sa.inspect(engine).get_pk_constraint("ev")["name"] == "ev_pkey"
        engine.dispose()

    def test_a_key_something_depends_on_stays_in_place(self, pg_url: str, stage: Stage) -> None:
        """A view grouping by the key relies on the primary key: it cannot be dropped, so the write keeps it."""
        view = "CREATE VIEW ev_by_id AS SELECT id, s, count(*) AS n FROM ev GROUP BY id"
        engine = self.prepared(pg_url, view)
        keys = run(engine, "SELECT oid FROM pg_class WHERE relname = 'ev_pkey'")
        load_dataset(stage({"id": [7, 8], "s": ["a", "b"]}), engine=engine, target_table="ev", load_strategy="replace")
        assert run(engine, "SELECT id, s, n FROM ev_by_id ORDER BY id") == [(7, "a", 1), (8, "b", 1)]
        assert run(engine, "SELECT oid FROM pg_class WHERE relname = 'ev_pkey'") == keys
        assert self.indexes(engine) == [("ev_pkey",), ("ev_s",)]
        engine.dispose()

    def test_a_table_that_foreign_keys_point_at_is_emptied_with_delete(self, pg_url: str, stage: Stage) -> None:
        engine = self.prepared(pg_url, "CREATE TABLE child (ev_id BIGINT REFERENCES ev (id))")
        files = self.relfilenode(engine)
        result = load_dataset(stage({"id": [7], "s": ["a"]}), engine=engine, target_table="ev", load_strategy="replace")
        assert run(engine, "SELECT id, s FROM ev") == [(7, "a")]
        assert self.relfilenode(engine) == files
        assert result.metrics["rows_deleted"] == 40
        engine.dispose()

    def test_delete_triggers_still_fire(self, pg_url: str, stage: Stage) -> None:
        audit = """
        CREATE TABLE audit (id BIGINT);
        CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO audit VALUES (OLD.id); RETURN OLD; END $$;
        CREATE TRIGGER ev_deleted AFTER DELETE ON ev FOR EACH ROW EXECUTE FUNCTION log_delete();
        """
        engine = self.prepared(pg_url, audit)
        load_dataset(stage({"id": [7], "s": ["a"]}), engine=engine, target_table="ev", load_strategy="replace")
        assert run(engine, "SELECT count(*) FROM audit") == [(40,)]
        engine.dispose()


class TestReadAhead:
    def test_items_arrive_in_order(self) -> None:
        assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))

    def test_a_producer_error_is_raised_to_the_consumer(self) -> None:
        def items() -> Iterator[int]:
            yield 1
            raise ValueError("bad batch")

        got: list[int] = []
        with pytest.raises(ValueError, match="bad batch"):
            got.extend(read_ahead(items()))
        assert got == [1]

    def test_closing_early_stops_and_joins_the_thread(self) -> None:
        before = threading.active_count()
        stream = read_ahead(iter(range(10_000)), depth=1)
        assert next(stream) == 0
        stream.close()
        assert threading.active_count() == before
