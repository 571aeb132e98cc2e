"""File sources: CSV, Parquet, JSON (an array of records) and JSON lines, local or through fsspec.

DuckDB reads every format (its CSV sniffer, its JSON and Parquet readers) and streams Arrow
batches; object-store URIs go through their fsspec filesystem registered with DuckDB. Types are
sniffed from the first rows; when a later row does not fit them, the file is read again with
types sniffed from the whole file. Encodings DuckDB does not read natively are first transcoded
to UTF-8 in a temporary file. DuckDB's errors are turned into messages with a line number.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow_agent_provider.contracts import FileSource
from airflow_agent_provider.engines.sources import Cancelled, Sink, first_line, rechunk
from airflow_agent_provider.engines.sqlsafe import sql_literal
from airflow_agent_provider.engines.staging import connect, shared_cursor
from airflow_agent_provider.engines.staging.paths import is_local, local_path
from airflow_agent_provider.engines.staging.writer import empty_table
from airflow_agent_provider.exceptions import SourceError
from airflow_agent_provider.redaction import redact

_NATIVE_ENCODINGS = {"csv": {"utf-8": "utf-8", "iso8859-1": "latin-1"}, "json": {"utf-8": "utf-8"}}
_GLOB_CHARS = frozenset("*?[")
_TYPE_SURPRISES = ("Conversion Error", "Could not convert", "JSON transform error", "has unknown key")


@dataclass(frozen=True)
class _Location:
    """Where a file is: ``path`` for DuckDB, ``inner`` for its fsspec filesystem, ``shown`` for messages."""

    path: str
    inner: str
    fs: Any = None
    shown: str = ""

    @property
    def is_glob(self) -> bool:
        return bool(_GLOB_CHARS & set(self.inner))

    def open(self) -> Any:
        return self.fs.open(self.inner, "rb") if self.fs is not None else open(self.inner, "rb")


def extract_file(source: FileSource, sink: Sink) -> None:
    """Stage a file chunk by chunk; an empty file stages nothing (the caller applies the row minimum)."""
    location = _locate(source)
    if _is_empty(source, location):
        return
    with _utf8(source, location) as readable:
        _read(source, sink, readable)


def check_encoding(source: FileSource) -> None:
    """Raise ValueError for an encoding Python does not know (checked before anything runs)."""
    try:
        codecs.lookup(source.encoding)
    except LookupError:
        raise ValueError(f"source {source.name!r}: unknown encoding {source.encoding!r}") from None


def _locate(source: FileSource) -> _Location:
    raw = source.path
    if is_local(raw):
        path = os.path.expanduser(local_path(raw))
        return _Location(path=path, inner=path, shown=path)
    import fsspec.core

    shown = redact(raw.split("?")[0])
    try:
        fs, inner = fsspec.core.url_to_fs(raw)
    except (ImportError, ValueError) as err:
        raise SourceError(source.name, f"cannot open {shown}: {first_line(str(err))}") from err
    return _Location(path=raw, inner=inner, fs=fs, shown=shown)


def _is_empty(source: FileSource, location: _Location) -> bool:
    """True for a 0-byte file; raises SourceError for a missing file or a folder."""
    if location.is_glob:
        return False
    fs = location.fs
    is_folder = fs.isdir(location.inner) if fs is not None else os.path.isdir(location.inner)
    if is_folder:
        raise SourceError(
            source.name, f"{location.shown} is a folder; give a file or a glob pattern such as folder/*.parquet"
        )
    exists = fs.exists(location.inner) if fs is not None else os.path.isfile(location.inner)
    if not exists:
        raise SourceError(source.name, f"file not found: {location.shown}")
    size = fs.size(location.inner) if fs is not None else os.path.getsize(location.inner)
    return size == 0


def _kind(source: FileSource) -> str:
    return "json" if source.format in ("json", "jsonl") else str(source.format)


def _native(source: FileSource) -> str | None:
    """DuckDB's name for the source's encoding, or None when the file must be transcoded first."""
    if source.format == "parquet":
        return "utf-8"
    return _NATIVE_ENCODINGS[_kind(source)].get(codecs.lookup(source.encoding).name)


def _json_bom(source: FileSource, location: _Location) -> bool:
    """A JSON file that starts with a UTF-8 byte order mark (DuckDB's JSON reader rejects it)."""
    if _kind(source) != "json" or location.is_glob:
        return False
    with location.open() as handle:
        return bool(handle.read(3) == codecs.BOM_UTF8)


@contextmanager
def _utf8(source: FileSource, location: _Location) -> Iterator[_Location]:
    """The file as DuckDB can read it: as is, or transcoded to UTF-8 in a temporary folder."""
    bom = _native(source) == "utf-8" and _json_bom(source, location)
    if _native(source) is not None and not bom:
        yield location
        return
    if location.is_glob:
        raise SourceError(source.name, f"encoding {source.encoding!r} needs one file, not a glob pattern")
    with tempfile.TemporaryDirectory(prefix="aap-transcode-") as folder:
        target = os.path.join(folder, f"{source.name}.{source.format}")
        _transcode(source, location, target, "utf-8-sig" if bom else source.encoding)
        yield _Location(path=target, inner=target, shown=location.shown)


def _transcode(source: FileSource, location: _Location, target: str, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    line = 1
    with location.open() as src, open(target, "wb") as out:
        while block := src.read(1 << 20):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as err:
                raise _encoding_error(source, line + block.count(b"\n", 0, max(err.start, 0))) from err
            line += text.count("\n")
            out.write(text.encode("utf-8"))
        try:
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
        except UnicodeDecodeError as err:
            raise _encoding_error(source, line) from err


def _encoding_error(source: FileSource, line: int | str) -> SourceError:
    return SourceError(
        source.name,
        f"the file is not valid {source.encoding} text (first bad bytes on line {line}); "
        "set encoding to the file's real encoding, for example 'latin-1' or 'cp1252'",
    )


# ---- reading through DuckDB ------------------------------------------------------------------


def _read(source: FileSource, sink: Sink, location: _Location) -> None:
    """Read with types sniffed from the first rows; when a later row does not fit them, once more from every row."""
    for whole_file in (False, True):
        try:
            _stream(source, sink, location, whole_file=whole_file)
            return
        except (SourceError, Cancelled):  # Cancelled must stay itself: the source that failed is reported
            raise
        except Exception as err:
            if whole_file or not _is_type_surprise(err):
                raise _translate(source, err, location) from err
        sink.say("a later row does not fit the types sniffed from the first rows; reading again, sniffing every row")
        sink.restart()


def _is_type_surprise(err: Exception) -> bool:
    return isinstance(err, OSError | _duckdb_error()) and any(s in str(err) for s in _TYPE_SURPRISES)


def _duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def _reader_sql(source: FileSource, location: _Location, *, whole_file: bool, records: bool = True) -> str:
    path = sql_literal(location.path)
    if source.format == "parquet":
        return f"read_parquet({path}, union_by_name = true)"
    sample = ", sample_size = -1" if whole_file else ""
    if source.format == "csv":
        encoding = sql_literal(_native(source) or "utf-8")
        return (
            f"read_csv({path}, delim = {sql_literal(source.delimiter)}, quote = '\"', header = true, "
            f"encoding = {encoding}{sample})"
        )
    layout = "array" if source.format == "json" else "newline_delimited"
    return f"read_json({path}, format = '{layout}', records = '{str(records).lower()}'{sample})"


def _stream(source: FileSource, sink: Sink, location: _Location, *, whole_file: bool) -> None:
    # A local file needs nothing of its own, so it is read on a cursor of the shared DuckDB;
    # an fsspec filesystem is registered with a DuckDB of its own.
    con = shared_cursor() if location.fs is None else connect()
    try:
        if location.fs is not None:
            con.register_filesystem(location.fs)
        relation = _reader_sql(source, location, whole_file=whole_file)
        try:
            reader = con.sql(f"SELECT * FROM {relation}").to_arrow_reader(sink.chunk_size)
        except _duckdb_error() as err:
            if "expected records" in str(err) and _json_values(con, source, location) == 0:
                return  # an empty JSON array or an empty JSON-lines file: no rows, no columns
            raise
        for table in rechunk(reader, sink.chunk_size):
            sink.write(table)
        if sink.rows == 0:
            sink.write(empty_table(reader.schema))
    finally:
        con.close()


def _json_values(con: Any, source: FileSource, location: _Location) -> int:
    relation = _reader_sql(source, location, whole_file=False, records=False)
    row = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
    return int(row[0]) if row else 0


# ---- turning DuckDB's errors into causes -----------------------------------------------------


def _translate(source: FileSource, err: Exception, location: _Location) -> SourceError:
    text = str(err)
    if "No files found that match the pattern" in text:
        return SourceError(source.name, f"file not found: {location.shown}")
    if "Invalid unicode" in text or "invalid UTF-8" in text:
        return _encoding_error(source, _line_of(text) or "?")
    if "expected records" in text:
        return SourceError(source.name, "the file holds JSON values that are not objects; each record must be {...}")
    if "Expected top-level JSON array" in text:
        return SourceError(
            source.name,
            "expected a JSON array of records, but the file holds a JSON object; "
            "use format 'jsonl' for one object per line, or unwrap the list of records",
        )
    cause = _csv_cause(source, text, location) if source.format == "csv" else _json_cause(source, text, location)
    return SourceError(source.name, cause or f"cannot read {location.shown}: {first_line(text)}")


def _line_of(text: str) -> str | None:
    match = re.search(r"(?:Line: |in line )(\d+)", text)
    return match.group(1) if match else None


def _csv_cause(source: FileSource, text: str, location: _Location) -> str | None:
    if "Error when sniffing file" in text:
        return _diagnose_csv(source, location) or (
            f"cannot work out the CSV layout of {location.shown} with delimiter {source.delimiter!r}; "
            "check the delimiter and the quoting"
        )
    line = _line_of(text)
    if line is None:
        return None
    columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    original = re.search(r"Original Line: (.*)", text)
    shown = f": {first_line(original.group(1), 120)!r}" if original else ""
    if columns:
        return f"malformed CSV at line {line}: expected {columns.group(1)} columns, found {columns.group(2)}{shown}"
    if "unterminated quote" in text:
        return f"malformed CSV at line {line}: a quoted value is never closed{shown}"
    reason = re.search(r"(Error when converting column .*|Could not convert .*|Maximum line size .*)", text)
    return f"malformed CSV at line {line}: {reason.group(1) if reason else first_line(text)}{shown}"


def _diagnose_csv(source: FileSource, location: _Location) -> str | None:
    """Find the first row whose width differs from the header's (for errors DuckDB gives no line for)."""
    with location.open() as raw:
        text = io.TextIOWrapper(raw, encoding=_native(source) or "utf-8", errors="replace", newline="")
        reader = csv.reader(text, delimiter=source.delimiter, strict=True)
        width = None
        try:
            start = 1
            for row in reader:
                width = len(row) if width is None else width
                if len(row) != width:
                    return f"malformed CSV at line {start}: expected {width} columns (as in the header), got {len(row)}"
                start = reader.line_num + 1
        except csv.Error as err:
            return f"malformed CSV at line {start}: {err} (a quoted value is probably never closed)"
    return None


def _json_cause(source: FileSource, text: str, location: _Location) -> str | None:
    if "Malformed JSON" not in text:
        return None
    if source.format == "jsonl":
        found = _first_broken_line(location)
        if found:
            return f"broken JSON on line {found[0]}: {found[1]}"
    reason = re.search(r"in line \d+: (.*)", text)
    return f"broken JSON at line {_line_of(text) or '?'}: {reason.group(1).strip() if reason else first_line(text)}"


def _first_broken_line(location: _Location) -> tuple[int, str] | None:
    with location.open() as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                return number, err.msg
    return None
