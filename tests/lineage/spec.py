"""Validate OpenLineage events against the spec's JSON schemas, offline.

The schemas come from files, never the network: the OpenLineage spec (``openlineage_spec/``, see its
README for where it comes from: no PyPI, npm or Debian package ships it) and this provider's facet
schemas (shipped in ``airflow_agent_provider/lineage/schemas``). The Airflow provider's own facets
declare the spec's generic ``RunFacet`` as their schema. A facet whose ``_schemaURL`` names no known
schema fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent / "openlineage_spec"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_GROUPS = (("run", "facets"), ("job", "facets"))
DATASET_FACET_KEYS = ("facets", "inputFacets", "outputFacets")


def _schema_files() -> Iterator[Path]:
    yield SPEC_DIR / "OpenLineage.json"
    yield from sorted((SPEC_DIR / "facets").glob("*.json"))
    yield from (Path(str(p)) for p in resources.files("airflow_agent_provider.lineage").joinpath("schemas").iterdir())


@cache
def registry() -> Any:
    from referencing import Registry, Resource

    resources_ = []
    for path in _schema_files():
        document = json.loads(path.read_text())
        resources_.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources_)


def known_schema(url: str) -> bool:
    document = url.split("#", 1)[0]
    try:
        registry().contents(document)
    except LookupError:
        return False
    return True


def errors(instance: Any, schema_url: str) -> list[str]:
    """What is wrong with ``instance`` against the schema at ``schema_url`` (``$id`` + fragment)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator({"$ref": schema_url}, registry=registry())
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(instance)]


def facets_of(event: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(where, key, facet) of every facet of an event: run, job and each dataset's facets."""
    for part, key in FACET_GROUPS:
        for name, facet in (event.get(part, {}).get(key) or {}).items():
            yield f"{part}.{key}", name, facet
    for side in ("inputs", "outputs"):
        for dataset in event.get(side) or []:
            for key in DATASET_FACET_KEYS:
                for name, facet in (dataset.get(key) or {}).items():
                    yield f"{side}[{dataset['name']}].{key}", name, facet


def event_errors(event: Mapping[str, Any]) -> list[str]:
    """Every spec violation of one event: the RunEvent itself, then each facet against its own schema."""
    found = errors(event, RUN_EVENT)
    for where, name, facet in facets_of(event):
        url = str(facet.get("_schemaURL", ""))
        if not known_schema(url):
            found.append(f"{where}.{name}: no schema known for _schemaURL {url!r}")
            continue
        found += [f"{where}.{name}: {problem}" for problem in errors(facet, url)]
    return found
