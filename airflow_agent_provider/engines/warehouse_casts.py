"""DuckDB's forgiving conversions in the warehouse: ``TRY_CAST`` and ``try_strptime`` give NULL there too.

PostgreSQL's cast raises on a value that does not convert, where DuckDB's ``TRY_CAST`` gives NULL;
the fix-plan pipeline and the schema check count those NULLs. :func:`forgiving` rewrites both calls
(in a sqlglot tree) into calls of session functions (``pg_temp.aap_try_<type>``, PL/pgSQL that
catches the conversion error), and returns their DDL for the session to create first. PostgreSQL's
``to_timestamp`` also reads an empty value (as year 1 BC) and ignores trailing text, which DuckDB's
``strptime`` refuses: a regular expression of the format's shape (:func:`strptime_shape`) refuses them too.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlglot import exp

_FORGIVING_BODY = (
    "CREATE OR REPLACE FUNCTION pg_temp.{name}({args}) RETURNS {returns} LANGUAGE plpgsql STABLE{options} "
    "AS $aap$ BEGIN RETURN {body}; EXCEPTION WHEN others THEN RETURN NULL; END $aap$"
)


def forgiving(node: exp.Expression, dialect: str, functions: dict[str, str]) -> Any:
    """``TRY_CAST`` to a plain type, ``try_strptime`` with a literal format: a call of a catching session function."""
    from sqlglot import exp

    if isinstance(node, exp.TryCast) and node.to.this in _forgiving_types_set():
        target = node.to.sql(dialect=dialect)
        if target.upper() in ("TEXT", "VARCHAR"):  # every value has a text form
            return exp.cast(node.this, target)
        name = "aap_try_" + re.sub(r"[^a-z0-9]+", "_", target.lower()).strip("_")
        literal = isinstance(node.this, exp.Literal | exp.Null)
        return _session_call(
            _try_cast(name, target, functions, literal), exp.cast(node.this, "TEXT") if literal else node.this
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "try_strptime" and len(node.expressions) == 2:
        value, fmt = node.expressions
        if not (isinstance(fmt, exp.Literal) and fmt.is_string):
            return node
        from sqlglot.dialects.postgres import Postgres
        from sqlglot.time import format_time

        name, options = "aap_try_strptime", " SET timezone = 'UTC'"  # to_timestamp's zone, undone by the cast
        body = {"name": name, "args": "value text, fmt text, shape text", "returns": "timestamp", "options": options}
        # to_timestamp ignores what follows the format and reads '' as year 1 BC: the shape check refuses both
        parsed = "CASE WHEN value ~ shape THEN to_timestamp(value, fmt)::timestamp END"
        functions[name] = _FORGIVING_BODY.format(**body, body=parsed)
        pg_format = format_time(fmt.this, Postgres.INVERSE_TIME_MAPPING, Postgres.INVERSE_TIME_TRIE)
        shape = exp.Literal.string(strptime_shape(fmt.this))
        return _session_call(name, exp.cast(value, "TEXT"), exp.Literal.string(str(pg_format)), shape)
    return node


# Text that surely converts to the type (short enough not to overflow, of a plain shape: PostgreSQL's
# regular expressions are cheaper in this form than with bounded repeats) is cast directly, without the
# exception block whose subtransaction is the expensive part; the rest go through that block.
_DECIMAL = r"^[+-]?[0-9]+\.?[0-9]*$"
_SURE = {
    "BIGINT": (18, "~", r"^[+-]?[0-9]+$"),
    "INT": (9, "~", r"^[+-]?[0-9]+$"),
    "SMALLINT": (4, "~", r"^[+-]?[0-9]+$"),
    "DOUBLE PRECISION": (30, "~", _DECIMAL),
    "REAL": (30, "~", _DECIMAL),
    "DECIMAL": (30, "~", _DECIMAL),
    "BOOLEAN": (5, "~*", r"^(t|f|true|false|y|n|yes|no|on|off|1|0)$"),
}


def _try_cast(name: str, target: str, functions: dict[str, str], literal: bool) -> str:
    """The session function of ``TRY_CAST(... AS target)``: a catching PL/pgSQL function (``<name>_x``),
    and for a type with a sure shape an inlinable SQL function that casts sure values directly."""
    catching = f"{name}_x"
    body = {"name": catching, "args": "value anyelement", "returns": target, "options": ""}
    # DuckDB reads '1.5' as the integer 2 and rounds halves away from zero, as numeric's round does
    whole = target.upper() in ("BIGINT", "INT", "SMALLINT")
    functions[catching] = _FORGIVING_BODY.format(
        **body, body=f"round(value::text::numeric)::{target}" if whole else f"value::{target}"
    )
    sure = _SURE.get(target.upper())
    if sure is None or literal:  # a literal: a constant cast would be folded (and raise) while planning
        return catching
    most, op, shape = sure
    functions[name] = (
        f"CREATE OR REPLACE FUNCTION pg_temp.{name}(value anyelement) RETURNS {target} LANGUAGE sql STABLE "
        f"AS $aap$ SELECT CASE WHEN length(value::text) <= {most} AND value::text {op} '{shape}' "
        f"THEN value::{target} ELSE pg_temp.{catching}(value) END $aap$"
    )
    return name


_SHAPES = {
    "d": "[0-9]{1,2}", "m": "[0-9]{1,2}", "H": "[0-9]{1,2}", "I": "[0-9]{1,2}", "M": "[0-9]{1,2}",
    "S": "[0-9]{1,2}", "Y": "[0-9]{4}", "y": "[0-9]{2}", "f": "[0-9]{1,6}", "j": "[0-9]{1,3}",
    "b": "[A-Za-z]+", "B": "[A-Za-z]+", "a": "[A-Za-z]+", "A": "[A-Za-z]+", "p": "[AaPp][Mm]",
    "z": "[+-][0-9]{2}:?[0-9]{2}", "Z": "[A-Za-z_/+-]+", "%": "%",
}  # fmt: skip


def strptime_shape(fmt: str) -> str:
    """A regular expression a value must match in full to be read by the strptime format ``fmt`` (DuckDB
    refuses trailing text and an empty value; PostgreSQL's ``to_timestamp`` does not)."""
    parts, at = [], 0
    while at < len(fmt):
        if fmt[at] == "%" and at + 1 < len(fmt):
            parts.append(_SHAPES.get(fmt[at + 1], ".*?"))
            at += 2
        else:
            parts.append(r"\s+" if fmt[at].isspace() else re.escape(fmt[at]))
            at += 1
    return "^" + "".join(parts) + "$"


def _session_call(name: str, *args: Any) -> Any:
    from sqlglot import exp

    return exp.Dot(this=exp.to_identifier("pg_temp"), expression=exp.Anonymous(this=name, expressions=list(args)))


@functools.cache
def _forgiving_types_set() -> frozenset[Any]:
    from sqlglot import exp

    kinds = exp.DataType.Type
    return frozenset(
        {
            kinds.BIGINT, kinds.INT, kinds.SMALLINT, kinds.DOUBLE, kinds.FLOAT, kinds.DECIMAL, kinds.VARCHAR,
            kinds.TEXT, kinds.BOOLEAN, kinds.DATE, kinds.TIMESTAMP, kinds.TIMESTAMPTZ,
        }
    )  # fmt: skip
