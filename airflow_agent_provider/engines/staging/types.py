"""DuckDB type names as the logical types of ``expected_schema``."""

from __future__ import annotations

_LOGICAL = (
    ("BOOLEAN", "boolean"),
    ("TIMESTAMP", "timestamp"),
    ("DATE", "date"),
    ("DECIMAL", "float"),
    ("DOUBLE", "float"),
    ("FLOAT", "float"),
    ("REAL", "float"),
    ("INT", "integer"),
    ("VARCHAR", "string"),
    ("NULL", "null"),
)


def logical_type(duckdb_type: str) -> str:
    """Map a DuckDB type name to the logical types of ``expected_schema``."""
    upper = duckdb_type.upper()
    if upper.startswith(("INTERVAL", "STRUCT", "MAP", "UNION", "JSON")) or upper.endswith("]"):
        return "string"  # nested and odd types are text to the rules and the warehouse
    for prefix, logical in _LOGICAL:
        if prefix in upper:
            return logical
    return "string"
