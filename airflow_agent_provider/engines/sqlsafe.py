"""SQL built only from validated names: identifiers are checked, then double-quoted.

Values never reach SQL text: they are bound parameters or travel through COPY. Every statement
builder here takes names that went through :func:`identifier` (or a :class:`TableName`), so
the text it returns holds nothing that came from the data except checked, quoted names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airflow_agent_provider.contracts.identifiers import IDENTIFIER_RULE, is_identifier
from airflow_agent_provider.exceptions import UnsafeIdentifier


def identifier(name: object, what: str = "identifier") -> str:
    """Return ``name`` when it is a plain identifier, else raise :class:`UnsafeIdentifier`."""
    if not is_identifier(name):
        raise UnsafeIdentifier(f"{what} {name!r} is not a plain identifier ({IDENTIFIER_RULE})")
    return str(name)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier of any name (embedded quotes doubled), for names the data brought."""
    return '"' + str(name).replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal (embedded quotes doubled)."""
    return "'" + str(text).replace("'", "''") + "'"


def quote(name: str) -> str:
    """A validated, double-quoted identifier."""
    return f'"{identifier(name)}"'


def quote_list(names: Sequence[str], prefix: str = "") -> str:
    """``"a", "b"`` (or ``p."a", p."b"`` with a prefix) from validated names."""
    return ", ".join(prefix + quote(n) for n in names)


@dataclass(frozen=True)
class TableName:
    """A table name, optionally schema-qualified, whose parts are plain identifiers."""

    name: str
    schema: str | None = None

    @classmethod
    def parse(cls, target: object, what: str = "table") -> TableName:
        """``"table"`` or ``"schema.table"``; anything else raises :class:`UnsafeIdentifier`."""
        if not isinstance(target, str):
            raise UnsafeIdentifier(f"{what} name {target!r} is not a string")
        parts = target.split(".")
        if len(parts) > 2 or not all(is_identifier(p) for p in parts):
            raise UnsafeIdentifier(
                f"{what} name {target!r} is not a plain identifier or schema.identifier "
                "(letters, digits and underscores, starting with a letter or underscore)"
            )
        return cls(parts[-1], parts[0] if len(parts) == 2 else None)

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}" if self.schema else quote(self.name)

    def sibling(self, name: str) -> TableName:
        """Another table in the same schema."""
        return TableName(identifier(name, "table"), self.schema)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def key_match(key: Sequence[str], left: str, right: str) -> str:
    """``l."k1" = r."k1" AND ...`` for a join on the key columns."""
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)


def insert_select(target: TableName, source: str, columns: Sequence[str]) -> str:
    """Append every row of ``source`` to ``target``."""
    cols = quote_list(columns)
    return f"INSERT INTO {target.sql} ({cols}) SELECT {cols} FROM {source}"


def upsert_select(
    target: TableName, source: str, columns: Sequence[str], key: Sequence[str], *, differs: str = "IS DISTINCT FROM"
) -> str:
    """Insert new keys, update changed rows of existing keys, leave unchanged rows alone.

    The ``WHERE true`` resolves SQLite's parsing ambiguity of ``INSERT ... SELECT ... ON``; the
    null-safe ``differs`` guard (SQLite spells it ``IS NOT``) makes a re-run write nothing and the
    affected-row count honest.
    """
    cols = quote_list(columns)
    keys = quote_list(key)
    head = f"INSERT INTO {target.sql} AS tgt ({cols}) SELECT {cols} FROM {source} WHERE true ON CONFLICT ({keys})"
    rest = [c for c in columns if c not in key]
    if not rest:
        return f"{head} DO NOTHING"
    assign = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in rest)
    changed = " OR ".join(f"tgt.{quote(c)} {differs} excluded.{quote(c)}" for c in rest)
    return f"{head} DO UPDATE SET {assign} WHERE {changed}"


def duplicate_keys(target: TableName, key: Sequence[str], among: str | None = None) -> str:
    """Count the key values held by more than one row (only those also in ``among``, if given)."""
    keys = quote_list(key)
    where = f" WHERE ({keys}) IN (SELECT {keys} FROM {among})" if among else ""
    return f"SELECT count(*) FROM (SELECT 1 FROM {target.sql}{where} GROUP BY {keys} HAVING count(*) > 1) AS d"


def duplicate_example(target: TableName, key: Sequence[str]) -> str:
    """One key value held by more than one row of ``target``, with its row count."""
    keys = quote_list(key)
    return f"SELECT {keys}, count(*) FROM {target.sql} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1"


def present_keys(target: TableName, source: str, key: Sequence[str]) -> str:
    """Count the rows of ``source`` whose key is present in ``target`` (a semi-join)."""
    match = key_match(key, "t", "s")
    return f"SELECT count(*) FROM {source} AS s WHERE EXISTS (SELECT 1 FROM {target.sql} AS t WHERE {match})"
