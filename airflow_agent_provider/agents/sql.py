"""SQL from a description: written by Claude once, checked, cached as a reviewable file.

Every generated (or cached, possibly hand-edited) query passes ``engines.sqlgate.check_sql``, the
gate a person's SQL passes too, before it is cached or returned; the transform engine checks it
again and runs it in an isolated DuckDB (external access off).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.plans import PlanCache
from airflow_agent_provider.agents.prompts import MAX_DESCRIPTION_CHARS, SQL_SYSTEM, clip, data_block
from airflow_agent_provider.contracts import Transformation, Usage
from airflow_agent_provider.engines.sqlgate import check_sql
from airflow_agent_provider.exceptions import ModelCallError

log = logging.getLogger(__name__)

Schemas = Mapping[str, Mapping[str, str]]
"""table -> {column: type}"""


class SqlAnswer(BaseModel):
    """What Claude answers when writing SQL (JSON schema title SqlAnswer)."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=20_000, description="one DuckDB SELECT query, no trailing semicolon")
    explanation: str = Field(default="", max_length=500)


def sql_prompt(transformation: Transformation, schemas: Schemas) -> str:
    tables = {str(clip(t, 64)): {str(clip(c, 64)): clip(k, 32) for c, k in cols.items()} for t, cols in schemas.items()}
    description = clip(transformation.description or "", MAX_DESCRIPTION_CHARS * 5)
    return (
        f"Write the DuckDB query for the transformation {transformation.name!r}.\n\n"
        f"What it must do (from the DAG author): {description}\n\n"
        f"Tables it may read (table: column: type):\n{data_block(tables)}\n\n"
        "Answer with sql and a one-sentence explanation."
    )


def write_sql(claude: Claude, transformation: Transformation, schemas: Schemas) -> tuple[str, Usage]:
    """Ask Claude for the SQL of a described transformation (not yet checked: see ``check_sql``).

    :raises ModelCallError: no valid answer within the policy.
    """
    if not transformation.description:
        raise ValueError(f"transformation {transformation.name!r} has no description to write SQL from")
    answer = claude.ask("sql", system=SQL_SYSTEM, user=sql_prompt(transformation, schemas), output=SqlAnswer)
    return answer.value.sql.strip().rstrip(";").strip(), answer.usage


class SqlWriter:
    """``(transformation, schemas) -> sql`` for the transform engine: the plan cache first, then Claude.

    Every query, cached or new, passes ``check_sql`` before it is returned. Claude's client is built
    only on a cache miss, so cached plans run without credentials. ``usage`` adds up the calls made.

    :param claude: who writes the SQL (model, bounds and the run's budget included).
    :param cache: where plans are kept (None: no cache, every call asks Claude).
    """

    def __init__(self, claude: Claude, *, cache: PlanCache | None) -> None:
        self.claude, self.cache = claude, cache
        self.usage = Usage()
        self.cache_hits: list[str] = []

    def __call__(self, transformation: Transformation, schemas: Schemas) -> str:
        description = transformation.description or ""
        cached = self.cache.get(transformation.name, description, schemas) if self.cache else None
        if cached is not None:
            self.cache_hits.append(transformation.name)
            log.info("Plan for %s read from the plan cache (no model call)", transformation.name)
            return check_sql(cached, schemas)
        try:
            sql, usage = write_sql(self.claude, transformation, schemas)
        except ModelCallError as err:
            self.usage = self.usage + (err.usage or Usage())
            raise
        self.usage = self.usage + usage
        checked = check_sql(sql, schemas)
        if self.cache is not None:
            model = self.claude.model_for("sql")
            path = self.cache.put(transformation.name, description, schemas, checked, model=model)
            log.info("Plan for %s written by %s and saved to %s", transformation.name, model, path)
        return checked
