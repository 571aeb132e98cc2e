"""The checksum a DatasetWriter folds while writing equals describe()'s full re-read of the dataset.

describe() stays the reference (it also describes datasets written by others): every test writes
real Parquet, then compares ``finish()`` with ``describe()`` of the same folder.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_agent_provider.engines import staging


def write(uri: str, chunks: list[pa.Table], schema: pa.Schema | None = None) -> tuple[staging.DatasetWriter, object]:
    writer = staging.DatasetWriter(uri)
    for chunk in chunks:
        writer.write(chunk)
    return writer, writer.finish(schema)


def mixed(start: int, rows: int) -> pa.Table:
    """A chunk of many types, with NULLs in every column."""
    ids = list(range(start, start + rows))

    def holes(values: list[object]) -> list[object]:
        return [None if i % 7 == 3 else v for i, v in zip(ids, values, strict=True)]

    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "small": pa.array(holes([i % 100 for i in ids]), pa.int32()),
            "price": pa.array(holes([i / 3 for i in ids]), pa.float64()),
            "name": pa.array(holes([f"name {i % 13}" for i in ids]), pa.string()),
            "flag": pa.array(holes([i % 2 == 0 for i in ids]), pa.bool_()),
            "day": pa.array(holes([date(2026, 1, 1 + i % 28) for i in ids]), pa.date32()),
            "at": pa.array(holes([datetime(2026, 1, 1, i % 24, i % 60) for i in ids]), pa.timestamp("us")),
            "at_utc": pa.array(
                holes([datetime(2026, 1, 1, i % 24, tzinfo=timezone.utc) for i in ids]), pa.timestamp("us", tz="UTC")
            ),
            "amount": pa.array(holes([Decimal(i) / 100 for i in ids]), pa.decimal128(12, 2)),
            "tags": pa.array(holes([[f"t{i % 3}"] for i in ids]), pa.list_(pa.string())),
        }
    )


class TestChecksumOnWrite:
    def test_several_chunks_with_nulls_match_describe(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "mixed")
        writer, ref = write(uri, [mixed(0, 1000), mixed(1000, 1000), mixed(2000, 17)])
        assert writer.checksum_on_write
        assert ref == staging.describe(uri)
        assert ref.row_count == 2017

    def test_value_does_not_depend_on_how_rows_are_chunked(self, tmp_path: Path) -> None:
        whole = mixed(0, 3000)
        _, one = write(str(tmp_path / "one"), [whole])
        _, many = write(str(tmp_path / "many"), [whole.slice(0, 5), whole.slice(5, 2000), whole.slice(2005)])
        assert one.checksum == many.checksum

    def test_a_changed_value_changes_the_checksum(self, tmp_path: Path) -> None:
        table = mixed(0, 100)
        _, before = write(str(tmp_path / "a"), [table])
        changed = table.set_column(2, "price", pa.array([1.5, *table["price"].to_pylist()[1:]], pa.float64()))
        _, after = write(str(tmp_path / "b"), [changed])
        assert before.checksum != after.checksum

    def test_chunks_whose_types_differ_fall_back_to_a_full_read(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "drift")
        ints = pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array([1, None], pa.int64())})
        floats = pa.table({"id": pa.array([3], pa.int64()), "v": pa.array([2.5], pa.float64())})
        writer, ref = write(uri, [ints, floats])
        assert not writer.checksum_on_write
        assert ref == staging.describe(uri)
        assert ref.columns == {"id": "integer", "v": "float"}

    def test_a_chunk_with_a_missing_column_falls_back(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "missing")
        writer, ref = write(uri, [pa.table({"a": [1], "b": ["x"]}), pa.table({"a": [2]})])
        assert not writer.checksum_on_write
        assert ref == staging.describe(uri)
        assert ref.row_count == 2

    def test_all_null_column_whose_parquet_type_differs_still_matches(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "nulls")
        table = pa.table({"id": [1, 2, 3], "nothing": pa.array([None, None, None], pa.null())})
        _, ref = write(uri, [table, table])
        assert ref == staging.describe(uri)

    def test_empty_dataset_with_a_schema_matches(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "empty")
        schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
        _, ref = write(uri, [], schema)
        assert ref == staging.describe(uri)
        assert ref.row_count == 0

    def test_pandas_chunks_match(self, tmp_path: Path) -> None:
        import pandas as pd

        uri = str(tmp_path / "frame")
        frame = pd.DataFrame({"id": [1, 2, None], "name": ["a", None, "c"]})
        _, ref = write(uri, [frame, frame])
        assert ref == staging.describe(uri)

    def test_writers_in_threads_each_match(self, tmp_path: Path) -> None:
        refs: dict[int, object] = {}

        def run(index: int) -> None:
            refs[index] = write(str(tmp_path / f"t{index}"), [mixed(index, 500), mixed(index + 500, 500)])[1]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {i: refs[i] for i in range(4)} == {i: staging.describe(str(tmp_path / f"t{i}")) for i in range(4)}


class TestParts:
    def test_parts_are_snappy_with_dictionaries_for_text_only(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "codec")
        write(uri, [mixed(0, 200)])
        meta = pq.ParquetFile(staging.part_files(uri)[0]).metadata.row_group(0)
        columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
        assert {c.compression for c in columns.values()} == {"SNAPPY"}
        assert "RLE_DICTIONARY" in columns["name"].encodings
        assert "RLE_DICTIONARY" not in columns["id"].encodings

    def test_a_retry_restages_from_scratch(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "retry")
        write(uri, [mixed(0, 10), mixed(10, 10), mixed(20, 10)])
        _, ref = write(uri, [mixed(0, 5)])
        assert ref.row_count == 5
        assert len(staging.part_files(uri)) == 1


class TestSharedCursor:
    def test_cursors_are_independent_connections(self) -> None:
        first, second = staging.shared_cursor(), staging.shared_cursor()
        try:
            first.register("only_here", pa.table({"x": [1]}))
            assert first.execute("SELECT x FROM only_here").fetchall() == [(1,)]
            with pytest.raises(Exception, match="only_here"):
                second.execute("SELECT x FROM only_here")
        finally:
            first.close()
            second.close()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_a_forked_child_gets_a_duckdb_of_its_own(self, tmp_path: Path) -> None:
        uri = str(tmp_path / "forked")
        write(uri, [mixed(0, 50)])  # the parent's shared DuckDB now exists
        expected = staging.describe(uri).checksum
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            code = 1
            try:
                os.write(write_end, staging.describe(uri).checksum.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        status = wait_child(pid, timeout_s=60)
        with os.fdopen(read_end) as pipe:
            assert pipe.read() == expected
        assert os.waitstatus_to_exitcode(status) == 0


def wait_child(pid: int, timeout_s: float) -> int:
    """The child's wait status; a child still running after ``timeout_s`` is killed and fails the test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout_s} s")
