"""Plain identifiers: the only names that become tables, columns, datasets or path segments.

Letters, digits and underscores, starting with a letter or underscore, at most 63 characters
(PostgreSQL's limit), so a name is safe unquoted in every dialect and as a folder name.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

MAX_IDENTIFIER = 63
IDENTIFIER_RE = re.compile(rf"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_IDENTIFIER - 1}}}$")
IDENTIFIER_RULE = (
    f"letters, digits and underscores, starting with a letter or underscore, at most {MAX_IDENTIFIER} characters"
)

Identifier = Annotated[str, Field(pattern=IDENTIFIER_RE.pattern, max_length=MAX_IDENTIFIER)]
"""A plain identifier in a pydantic model (the pattern shows in the JSON schema Claude answers to)."""


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and IDENTIFIER_RE.fullmatch(value) is not None


def check_name(value: str, what: str = "name") -> str:
    """A dataset, source or transformation name: a plain identifier, so it is safe as a path and a table."""
    if not is_identifier(value):
        raise ValueError(f"{what} {value!r} must be a plain identifier ({IDENTIFIER_RULE})")
    return value
