"""Synthesize a minimal JSON value that is valid against a JSON schema.

Used by :class:`~airflow_agent_provider.testing.FakeClaude` for its *auto answer*: when a request carries
``output_config.format.schema`` and no scripted rule matches, the fake answers with the smallest
plausible instance of that schema (first ``enum`` value, ``const``, required properties only, the
caller's text for strings (FakeClaude's default-answer mark; ``"auto"`` by default), numbers clamped into
``minimum``/``maximum``, ``minItems`` array items, ``$ref`` resolved into ``$defs``, first
``anyOf``/``oneOf`` option).

Only the subset of JSON Schema that structured outputs accept is handled; ``pattern`` is ignored.
Numeric and length limits that ``anthropic.transform_schema`` (used by ``messages.parse``) moves into the
description, e.g. ``"{maximum: 3, minimum: 1}"``, are honoured too, so local pydantic validation passes.
"""

from __future__ import annotations

import math
import re
from typing import Any

Schema = dict[str, Any]

_MAX_DEPTH = 24
_HINT_KEYS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
)
_HINT = re.compile(rf"\b({'|'.join(_HINT_KEYS)}|minItems|maxItems): (-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_STRING_FORMATS: dict[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "auto@example.com",
    "uri": "https://example.com/auto",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def schema_instance(schema: Schema, text: str = "auto") -> Any:
    """Return a minimal value valid against ``schema`` (``$ref`` resolved against ``schema`` itself).

    :param text: what a string without a ``format`` holds (cut to its ``maxLength``).
    """
    return _instance(schema, schema, 0, text)


def _instance(schema: Schema, root: Schema, depth: int, text: str = "auto") -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("schema nests too deeply (recursive required reference?)")
    schema = _with_description_hints(resolve_ref(schema, root))
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance(_pick_option(schema[key], root, depth), root, depth + 1, text)
    if schema.get("allOf"):
        return _instance(_merge_all_of(schema, root), root, depth + 1, text)
    return _by_type(schema, _type_of(schema), root, depth, text)


def resolve_ref(schema: Schema, root: Schema) -> Schema:
    seen = 0
    while "$ref" in schema and seen < _MAX_DEPTH:
        ref = str(schema["$ref"])
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings}
        seen += 1
    return schema


def _with_description_hints(schema: Schema) -> Schema:
    """Limits that ``transform_schema`` moved into the description, e.g. ``{maximum: 3, minimum: 1}``."""
    description = schema.get("description")
    if not isinstance(description, str) or "{" not in description:
        return schema
    hints = {key: float(value) for key, value in _HINT.findall(description.rsplit("{", 1)[1])}
    return {**hints, **schema} if hints else schema


def _pick_option(options: list[Schema], root: Schema, depth: int) -> Schema:
    """First option, except deep inside recursive structures where a ``null`` option ends the chain."""
    if depth > _MAX_DEPTH // 2:
        for option in options:
            if _type_of(resolve_ref(option, root)) == "null":
                return option
    return options[0]


def _merge_all_of(schema: Schema, root: Schema) -> Schema:
    merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
    for raw_part in schema["allOf"]:
        part = resolve_ref(raw_part, root)
        merged.setdefault("properties", {}).update(part.get("properties", {}))
        merged["required"] = [*merged.get("required", []), *part.get("required", [])]
        merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
    return merged


def _type_of(schema: Schema) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        return str(non_null[0] if non_null else "null")
    if declared:
        return str(declared)
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _by_type(schema: Schema, kind: str, root: Schema, depth: int, text: str) -> Any:
    if kind == "object":
        return _object(schema, root, depth, text)
    if kind == "array":
        return _array(schema, root, depth, text)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema, text)


def _object(schema: Schema, root: Schema, depth: int, text: str) -> dict[str, Any]:
    properties: dict[str, Schema] = schema.get("properties", {})
    return {name: _instance(properties.get(name, {}), root, depth + 1, text) for name in schema.get("required", [])}


def _array(schema: Schema, root: Schema, depth: int, text: str) -> list[Any]:
    prefix = [_instance(item, root, depth + 1, text) for item in schema.get("prefixItems", [])]
    count = max(int(schema.get("minItems", 0)) - len(prefix), 0)
    items = schema.get("items")
    if not count or not isinstance(items, dict):
        return prefix
    resolved = resolve_ref(items, root)
    if schema.get("uniqueItems") and resolved.get("enum"):
        return prefix + list(resolved["enum"][:count])
    return prefix + [_instance(items, root, depth + 1, text) for _ in range(count)]


def _string(schema: Schema, default: str) -> str:
    text = _STRING_FORMATS.get(str(schema.get("format", "")), default)
    min_length = int(schema.get("minLength", 0))
    if len(text) < min_length:
        text += "x" * (min_length - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _number(schema: Schema, *, integer: bool) -> int | float:
    low, high = _bounds(schema, integer=integer)
    value: float = 0
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high if low is None else max(low, high)
    step = schema.get("multipleOf")
    if step and value % step:
        value = math.ceil(value / step) * step
    return int(value) if integer else float(value)


def _bounds(schema: Schema, *, integer: bool) -> tuple[float | None, float | None]:
    nudge = 1 if integer else 1e-6
    low = schema.get("minimum")
    high = schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + nudge
    if schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - nudge
    if integer:
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
    return low, high
