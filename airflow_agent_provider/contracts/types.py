"""The logical column types of ``expected_schema``, and how they travel through DuckDB.

Every stage speaks these six types; DuckDB (which reads and writes every staged dataset) carries
each as one of its own types, and a DuckDB column type reads back as one of the six.
"""

from __future__ import annotations

from typing import Literal, get_args

LogicalType = Literal["integer", "float", "string", "boolean", "date", "timestamp"]
LOGICAL_TYPES: tuple[LogicalType, ...] = get_args(LogicalType)

DUCKDB_TYPES: dict[str, str] = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
"""The DuckDB type each logical type travels as (casts, empty columns, fixed columns)."""

_FROM_DUCKDB: tuple[tuple[str, LogicalType], ...] = (
    ("BOOLEAN", "boolean"),
    ("TIMESTAMP", "timestamp"),
    ("DATE", "date"),
    ("DECIMAL", "float"),
    ("DOUBLE", "float"),
    ("FLOAT", "float"),
    ("REAL", "float"),
    ("INT", "integer"),
)
"""DuckDB type-name fragments -> logical type, first match wins; anything else is text."""


def logical_type(duckdb_type: str) -> LogicalType | None:
    """The logical type of a DuckDB column type; None for DuckDB's ``NULL`` type.

    A ``NULL``-typed column holds nothing but NULLs (an all-null JSON field, ``SELECT NULL``): it
    has no type yet, and fits any expected type. Nested and odd types (lists, structs, maps,
    intervals, JSON) are text to the rules and the warehouse.
    """
    upper = duckdb_type.upper()
    if upper.strip('"') == "NULL":
        return None
    if upper.startswith(("INTERVAL", "STRUCT", "MAP", "UNION", "JSON")) or upper.endswith("]"):
        return "string"
    return next((logical for fragment, logical in _FROM_DUCKDB if fragment in upper), "string")
