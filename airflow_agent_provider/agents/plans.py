"""The plan cache: SQL written by Claude, kept as a reviewable file, reused while nothing changed.

A plan's key is the sha256 of its description and its input schemas (sorted), so a changed
description or a changed input schema makes a new plan, and an unchanged one costs no tokens.
Files are ``<name>-<key12>.sql`` with a comment header (name, description, schemas hash, model,
created): commit the folder, review plans in pull requests, edit one by hand if you like (it is
checked again before it runs), delete one to have it written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from airflow_agent_provider.contracts.identifiers import check_name

_HEADER = "-- "
_MARKER = "-- airflow-agent-provider plan"


def schemas_hash(schemas: Mapping[str, Mapping[str, str]]) -> str:
    canonical = {table: dict(sorted(cols.items())) for table, cols in sorted(schemas.items())}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def plan_key(description: str, schemas: Mapping[str, Mapping[str, str]]) -> str:
    """sha256 of the description and the sorted input schemas."""
    material = json.dumps({"description": description, "schemas": schemas_hash(schemas)}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


class PlanCache:
    """A folder of ``<name>-<key12>.sql`` plans.

    :param folder: where plans live (created on the first write).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, name: str, description: str, schemas: Mapping[str, Mapping[str, str]]) -> Path:
        key = plan_key(description, schemas)
        return self.folder / f"{check_name(name, 'transformation name')}-{key[:12]}.sql"

    def get(self, name: str, description: str, schemas: Mapping[str, Mapping[str, str]]) -> str | None:
        """The cached SQL (header stripped), or None when there is no plan for this key."""
        path = self.path(name, description, schemas)
        if not path.is_file():
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
        while lines and (lines[0].startswith(_HEADER) or not lines[0].strip()):
            lines.pop(0)
        body = "\n".join(lines).strip()
        return body or None

    def put(
        self, name: str, description: str, schemas: Mapping[str, Mapping[str, str]], sql: str, *, model: str
    ) -> Path:
        """Write the plan atomically and return its path."""
        path = self.path(name, description, schemas)
        self.folder.mkdir(parents=True, exist_ok=True)
        header = [
            f"{_MARKER}: {name}",
            f"-- description: {' '.join(description.split())}",
            f"-- schemas: sha256:{schemas_hash(schemas)}",
            f"-- model: {model}",
            f"-- created: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
            "-- Written by Claude from the description; review it. It is checked again before it runs.",
            "-- Edit it freely, or delete this file to have it written again.",
        ]
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join([*header, "", sql.strip(), ""]), encoding="utf-8")
        os.replace(tmp, path)
        return path
