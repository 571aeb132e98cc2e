"""Python values (a database driver's rows) turned into Arrow arrays, the type decided in one pass.

``pyarrow.array`` on a Python list asks pyarrow's pandas shim whether the list is a pandas object,
and that question imports pandas (and numpy's and pandas' hundreds of modules: about a second in
a fresh task process). The extract stage needs none of it, so the arrays are built here from
numpy buffers with ``pyarrow.Array.from_buffers``, which never consults pandas.

One look at the types present in a chunk's column decides its Arrow type: integers (int64),
integers and floats (float64), booleans, text, bytes, dates, times, timestamps (naive, or aware
and stored as UTC), durations, decimals. Any other mix (a number next to a word, an aware next to
a naive timestamp, JSON objects) is text, each value written as ``str()`` (bytes as hex, dicts and
lists as JSON): ``column_array`` returns None and the caller asks for ``text_array``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_agent_provider.engines.staging.writer import empty_table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_EPOCH_DAYS = dt.date(1970, 1, 1).toordinal()
_NONE = type(None)
_BINARY = (bytes, bytearray, memoryview)
_MAX_DECIMAL_DIGITS = 76


def column_array(values: list[Any]) -> pa.Array | None:
    """The values as one Arrow array of the type they share; None when they share none (make it text)."""
    import pyarrow as pa

    kinds = set(map(type, values))
    nulls = _NONE in kinds
    kinds.discard(_NONE)
    if not kinds:
        return pa.nulls(len(values))
    if len(kinds) == 1:
        build = _BUILDERS.get(next(iter(kinds)))
        return build(values, nulls) if build is not None else None
    if kinds <= {int, float}:
        return _numbers(values, nulls, "float64")
    if kinds <= set(_BINARY):
        return _binary(values, nulls)
    return None


def text_array(values: list[Any]) -> pa.Array:
    """The values as text: ``str()`` of each, bytes as hex, dicts and lists as JSON, None as null."""
    return _binary_like([None if v is None else _text(v).encode("utf-8") for v in values], text=True)


def empty_text_table(names: list[str]) -> pa.Table:
    """A table with no rows whose columns are all text."""
    import pyarrow as pa

    return empty_table(pa.schema([(name, pa.string()) for name in names]))


def _text(value: Any) -> str:
    if isinstance(value, _BINARY):
        return bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _validity(values: list[Any], nulls: bool = True) -> tuple[np.ndarray | None, pa.Buffer | None, int]:
    """The non-null mask, its Arrow validity bitmap and the null count (None, None, 0 when ``nulls`` is False)."""
    import numpy as np
    import pyarrow as pa

    if not nulls:
        return None, None, 0
    present = np.fromiter(map(operator.is_not, values, itertools.repeat(None)), dtype=np.bool_, count=len(values))
    count = len(values) - int(np.count_nonzero(present))
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little")) if count else None
    return present, bitmap, count


def _booleans(values: list[Any], nulls: bool) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    _, bitmap, count = _validity(values, nulls)
    bits = np.fromiter((v is True for v in values), dtype=np.bool_, count=len(values))
    data = pa.py_buffer(np.packbits(bits, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [bitmap, data], null_count=count)


def _numbers(values: list[Any], nulls: bool, dtype: str) -> pa.Array | None:
    """int64 or float64 from Python ints and floats; None when an integer does not fit 64 bits."""
    import numpy as np
    import pyarrow as pa

    present, bitmap, count = _validity(values, nulls)
    try:
        filled = values if present is None else (0 if v is None else v for v in values)
        data = np.fromiter(filled, dtype=dtype, count=len(values))
    except OverflowError:
        return None
    arrow_type = pa.int64() if dtype == "int64" else pa.float64()
    return pa.Array.from_buffers(arrow_type, len(values), [bitmap, pa.py_buffer(data)], null_count=count)


def _binary_like(encoded: list[bytes | None], *, text: bool) -> pa.Array:
    """A (large) string or binary array from already-encoded values."""
    import numpy as np
    import pyarrow as pa

    count = len(encoded)
    _, bitmap, nulls = _validity(encoded)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.fromiter((0 if v is None else len(v) for v in encoded), dtype=np.int64, count=count), out=offsets[1:])
    large = int(offsets[-1]) >= 2**31
    arrow_type = {(True, False): pa.string(), (True, True): pa.large_string(), (False, False): pa.binary()}.get(
        (text, large), pa.large_binary()
    )
    data = pa.py_buffer(b"".join(v for v in encoded if v is not None))
    offset_buffer = pa.py_buffer(offsets if large else offsets.astype(np.int32))
    return pa.Array.from_buffers(arrow_type, count, [bitmap, offset_buffer, data], null_count=nulls)


def _fixed(values: list[Any], arrow_type: pa.DataType, dtype: str, encode: Any) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    _, bitmap, nulls = _validity(values)
    data = np.fromiter((0 if v is None else encode(v) for v in values), dtype=dtype, count=len(values))
    return pa.Array.from_buffers(arrow_type, len(values), [bitmap, pa.py_buffer(data)], null_count=nulls)


def _micros_of_day(value: dt.time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _micros(value: dt.datetime) -> int:
    days = value.toordinal() - _EPOCH_DAYS
    return ((days * 24 + value.hour) * 60 + value.minute) * 60_000_000 + value.second * 1_000_000 + value.microsecond


def _timestamps(values: list[Any], nulls: bool) -> pa.Array | None:
    """Naive datetimes as timestamp[us]; aware ones as the same instants in UTC; a mix of both is text."""
    import pyarrow as pa

    aware = {v.tzinfo is not None and v.utcoffset() is not None for v in values if v is not None}
    if len(aware) > 1:
        return None
    if aware == {True}:
        utc = dt.timezone.utc
        return _fixed(values, pa.timestamp("us", tz="UTC"), "int64", lambda v: _micros(v.astimezone(utc)))
    return _fixed(values, pa.timestamp("us"), "int64", _micros)


def _decimals(values: list[Any], nulls: bool) -> pa.Array | None:
    """Exact decimals with the smallest precision and scale that hold every value (NaN or infinity: text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    scale, whole = 0, 1
    for value in values:
        if value is None:
            continue
        if not value.is_finite():
            return None
        _sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)  # finite
        scale = max(scale, -exponent)
        whole = max(whole, len(digits) + exponent)
    precision = max(whole, 1) + scale
    if precision > _MAX_DECIMAL_DIGITS:
        return None
    arrow_type = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    texts = _binary_like([None if v is None else format(v, "f").encode() for v in values], text=True)
    result: pa.Array = pc.cast(texts, arrow_type)
    return result


def _strings(values: list[Any], nulls: bool) -> pa.Array:
    """Text, encoded once as a whole; character offsets become byte offsets where UTF-8 characters start."""
    import numpy as np
    import pyarrow as pa

    present = [v for v in values if v is not None] if nulls else values
    joined = "".join(present)
    data = joined.encode("utf-8")
    _, bitmap, count = _validity(values, nulls)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    lengths = (0 if v is None else len(v) for v in values) if nulls else map(len, values)
    np.cumsum(np.fromiter(lengths, np.int64, len(values)), out=offsets[1:])  # in characters
    if len(data) != len(joined):  # not all ASCII: the byte where each character starts, by character offset
        raw = np.frombuffer(data, dtype=np.uint8)
        starts = np.append(np.flatnonzero((raw & 0xC0) != 0x80), len(data))
        offsets = starts[offsets]
    large = len(data) >= 2**31
    offset_buffer = pa.py_buffer(offsets if large else offsets.astype(np.int32))
    arrow_type = pa.large_string() if large else pa.string()
    return pa.Array.from_buffers(arrow_type, len(values), [bitmap, offset_buffer, pa.py_buffer(data)], null_count=count)


def _binary(values: list[Any], nulls: bool) -> pa.Array:
    return _binary_like([None if v is None else bytes(v) for v in values], text=False)


def _dates(values: list[Any], nulls: bool) -> pa.Array:
    import pyarrow as pa

    return _fixed(values, pa.date32(), "int32", lambda d: d.toordinal() - _EPOCH_DAYS)


def _times(values: list[Any], nulls: bool) -> pa.Array | None:
    import pyarrow as pa

    if any(v is not None and v.tzinfo is not None for v in values):
        return None
    return _fixed(values, pa.time64("us"), "int64", _micros_of_day)


def _durations(values: list[Any], nulls: bool) -> pa.Array:
    import pyarrow as pa

    return _fixed(values, pa.duration("us"), "int64", lambda d: d // dt.timedelta(microseconds=1))


_BUILDERS: dict[type, Callable[[list[Any], bool], pa.Array | None]] = {
    bool: _booleans,
    int: lambda values, nulls: _numbers(values, nulls, "int64"),
    float: lambda values, nulls: _numbers(values, nulls, "float64"),
    str: _strings,
    bytes: _binary,
    bytearray: _binary,
    memoryview: _binary,
    dt.datetime: _timestamps,
    dt.date: _dates,
    dt.time: _times,
    dt.timedelta: _durations,
    decimal.Decimal: _decimals,
}
