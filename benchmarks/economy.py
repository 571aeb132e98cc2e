"""Agent economy: what the Claude layer costs, measured against FakeClaude's usage figures.

FakeClaude counts tokens as the real API's order of magnitude (JSON characters / 4) and reports
prompt-cache writes and reads; costs use the provider's list prices (``agents.pricing``) for the
tier models (``agents.models``). Four figures:

- input tokens of one routing decision as the failing rows of the validated dataset grow from
  10 to 1,000,000 (the prompt must stay bounded: issues carry counts and bounded samples);
- model calls of a healthy run (validations pass, so neither diagnosis nor routing asks, and the
  described transformation's SQL comes from the plan cache);
- tokens of the second run of a described transformation (its SQL comes from the plan cache);
- the cost of a failing run: a diagnosis (small model) plus a routing decision (strong model),
  from a cold prompt cache (the dearest case);
- a 30-day backfill with one recurring failure (the same checks fail every day, with other counts
  and samples): routing calls and cost without and with decision memory (``reuse_decisions``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

ROUTES = {
    "proceed": "continue the run as it is; the issues are tolerable",
    "remediate_schema": "ask for a schema fix plan (rename, cast, default), apply it and re-validate",
    "quarantine_bad_rows": "move the offending rows to a quarantine table and continue with the rest",
    "escalate": "stop and ask the on-call data engineer to decide",
    "abort": "fail the run and alert",
}
ROUTE_REPLY = {
    "route": "quarantine_bad_rows",
    "rationale": (
        "Most rows are valid; the failing rows share one unknown event_type family and null user ids, "
        "which quarantine isolates without touching the good data. Schema is intact, so no fix plan is needed."
    ),
    "confidence": 0.82,
}
DIAGNOSIS_REPLY = {
    "summary": "events failed validation: unknown event types, null user ids and negative revenue on part of the rows.",
    "likely_cause": (
        "An upstream release started emitting a new event_type family (purchase_v*) without user ids; "
        "refunds are being sent as negative purchases."
    ),
    "recommendation": (
        "Quarantine the affected rows, load the rest, and ask the producer team to confirm the new event "
        "types before adding them to the allowed list."
    ),
    "severity": "high",
}
DESCRIBED = {
    "name": "daily",
    "type": "sql",
    "description": "Count events and sum revenue per user per day (date of event_ts), purchases only for revenue.",
}
DESCRIBED_SQL = (
    "SELECT user_id, CAST(event_ts AS DATE) AS date, count(*) AS events, "
    "coalesce(sum(revenue) FILTER (WHERE event_type = 'purchase'), 0) AS revenue FROM events GROUP BY ALL"
)
FAILING_SIZES = (10, 1_000, 100_000, 1_000_000)
BACKFILL_DAYS = 30


def agents_available() -> str | None:
    """None when the agent layer can be imported, else why not."""
    try:
        from airflow_agent_provider.agents import PlanCache, SqlWriter, choose_route, diagnose  # noqa: F401
        from airflow_agent_provider.testing import FakeClaude  # noqa: F401
    except ImportError as err:
        return f"not available yet: {err}"
    return None


def measure(work_dir: Path, failing_sizes: tuple[int, ...] = FAILING_SIZES) -> dict[str, Any]:
    """Every agent-economy figure; ``{"status": "not available yet: ..."}`` without the agent layer."""
    missing = agents_available()
    if missing:
        return {"status": missing}
    from airflow_agent_provider.testing import FakeClaude

    work_dir.mkdir(parents=True, exist_ok=True)
    with FakeClaude(api_key="fake-key") as fake:
        client = _client(fake.url)
        routing = [_routing_tokens(fake, client, work_dir, n) for n in failing_sizes]
        described, cache = _plan_cache(fake, client, work_dir)
        return {
            "status": "measured",
            "routing": routing,
            "described_transformation": described,
            "healthy_run": _healthy_run(fake, client, work_dir, cache),
            "failing_run": _failing_run(fake, client, work_dir),
            "backfill_memory": _backfill_memory(fake, client, work_dir),
        }


def _client(url: str) -> Any:
    import anthropic

    return anthropic.Anthropic(api_key="fake-key", base_url=url, max_retries=0)


def failing_validation(uri: str, failing: int, healthy: int = 1_000) -> Any:
    """Stage ``failing + healthy`` events, ``failing`` of them broken three ways, and validate them."""
    import duckdb

    from airflow_agent_provider.contracts import parse_quality_rules
    from airflow_agent_provider.engines.staging import DatasetWriter
    from airflow_agent_provider.engines.validate import validate_dataset
    from benchmarks.workload import EVENTS_SCHEMA, QUALITY_RULES

    sql = f"""
    SELECT i AS event_id,
           CASE WHEN i < {failing} THEN NULL ELSE i % 997 + 1 END AS user_id,
           CASE WHEN i < {failing} THEN 'purchase_v' || (i % 50000) ELSE 'click' END AS event_type,
           TIMESTAMP '2026-11-10 00:00:00' + to_seconds(i % 86400) AS event_ts,
           CASE WHEN i < {failing} THEN -1.5 ELSE 9.99 END AS revenue,
           's' || i AS session_id,
           CAST(NULL AS VARCHAR) AS campaign_id
    FROM range({failing + healthy}) AS t(i)"""
    con = duckdb.connect()
    try:
        writer = DatasetWriter(uri)
        for batch in con.sql(sql).to_arrow_reader(500_000):
            writer.write(batch)
        ref = writer.finish()
    finally:
        con.close()
    result = validate_dataset(
        ref, dataset="events", expected_schema=EVENTS_SCHEMA, quality_rules=parse_quality_rules(QUALITY_RULES["events"])
    )
    result.task_id = "validate_events"
    return result


def _usage_row(usage: Any) -> dict[str, Any]:
    return {
        "model_calls": usage.model_calls,
        "input_tokens": usage.input_tokens,
        "cache_write_tokens": usage.cache_creation_input_tokens,
        "cache_read_tokens": usage.cache_read_input_tokens,
        "total_input_tokens": usage.total_input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": usage.cost_usd,
    }


def _routing_tokens(fake: Any, client: Any, work_dir: Path, failing: int) -> dict[str, Any]:
    from airflow_agent_provider.agents import Claude, choose_route
    from airflow_agent_provider.testing import Reply

    validation = failing_validation(str(work_dir / f"failing_{failing}"), failing)
    fake.reset()
    fake.add(Reply.json(ROUTE_REPLY), match={"schema_title": "RouteDecision"})
    decision = choose_route(Claude.of(client), validations=[validation], branches=ROUTES)
    request = fake.messages_requests[-1]
    usage = decision.usage
    return {
        "failing_rows": failing,
        "issues": len(validation.issues),
        "route": decision.route,
        "request_bytes": len(json.dumps(request.json).encode()),
        **_usage_row(usage),
    }


def _healthy_run(fake: Any, client: Any, work_dir: Path, cache: Any) -> dict[str, Any]:
    """A healthy run with every judgment point wired to Claude, counting the requests that reach it.

    Validations of healthy data (``diagnose`` would ask only for a failed one), the route taken by
    ``RemediationBranchOperator``'s rule (Claude is asked only when a validation failed), and the
    described transformation with its plan already cached.
    """
    from airflow_agent_provider.agents import Claude, SqlWriter, diagnose
    from airflow_agent_provider.contracts import parse_transformations
    from airflow_agent_provider.engines.transform import run_transformations
    from airflow_agent_provider.operators.branch import results_passed

    fake.reset()
    validation = failing_validation(str(work_dir / "healthy"), 0, healthy=10_000)
    if not validation.passed:
        diagnose(Claude.of(client), validation)
    route = "on_pass" if results_passed([validation]) else _route(client, validation)
    writer = SqlWriter(Claude.of(client), cache=cache)
    run_transformations(
        validation.datasets,
        parse_transformations([DESCRIBED]),
        output_dataset="daily",
        output_uri=str(work_dir / "healthy_out"),
        write_sql=writer,
    )
    return {
        "validation": validation.status,
        "route": route,
        "plan_cache_hits": writer.cache_hits,
        "model_calls": len(fake.messages_requests),
    }


def _route(client: Any, validation: Any) -> str:
    from airflow_agent_provider.agents import Claude, choose_route

    return str(choose_route(Claude.of(client), validations=[validation], branches=ROUTES).route)


def _plan_cache(fake: Any, client: Any, work_dir: Path) -> tuple[dict[str, Any], Any]:
    """Run a described transformation twice with the same plan cache: the second run asks nothing."""
    from airflow_agent_provider.agents import Claude, PlanCache, SqlWriter
    from airflow_agent_provider.contracts import parse_transformations
    from airflow_agent_provider.engines.transform import run_transformations
    from airflow_agent_provider.testing import Reply

    fake.reset()
    fake.add(Reply.json({"sql": DESCRIBED_SQL, "explanation": "daily events and revenue per user"}))
    inputs = failing_validation(str(work_dir / "described_in"), 0, healthy=10_000).datasets
    cache = PlanCache(tempfile.mkdtemp(prefix="plans-", dir=work_dir))
    runs = []
    for attempt in (1, 2):
        writer = SqlWriter(Claude.of(client), cache=cache)
        result = run_transformations(
            inputs,
            parse_transformations([DESCRIBED]),
            output_dataset="daily",
            output_uri=str(work_dir / f"described_out_{attempt}"),
            write_sql=writer,
        )
        runs.append({"run": attempt, "rows": result.datasets["daily"].row_count, **_usage_row(writer.usage)})
    return {"runs": runs, "requests": len(fake.messages_requests)}, cache


def _failing_run(fake: Any, client: Any, work_dir: Path) -> dict[str, Any]:
    """Diagnosis plus routing of a failing validation, from a cold prompt cache, at list prices."""
    from airflow_agent_provider.agents import Claude, choose_route, diagnose
    from airflow_agent_provider.testing import Reply

    fake.reset()
    fake.add(Reply.json(ROUTE_REPLY), match={"schema_title": "RouteDecision"})
    fake.add(Reply.json(DIAGNOSIS_REPLY), match={"schema_title": "Diagnosis"})
    validation = failing_validation(str(work_dir / "failing_run"), 1_000, healthy=100_000)
    _, diagnosis_usage = diagnose(Claude.of(client), validation)
    decision = choose_route(Claude.of(client), validations=[validation], branches=ROUTES)
    route_usage = decision.usage
    total = diagnosis_usage + route_usage
    return {
        "calls": {"diagnose": _usage_row(diagnosis_usage), "route": _usage_row(route_usage)},
        "total": _usage_row(total),
        "requests": len(fake.messages_requests),
    }


def _backfill_memory(fake: Any, client: Any, work_dir: Path, days: int = BACKFILL_DAYS) -> dict[str, Any]:
    """A backfill of ``days`` runs, each failing the same checks with other counts, routed without and
    with decision memory. The memory side is what ``RemediationBranchOperator(reuse_decisions=True)``
    does in a run: the signature, ``recall`` over the earlier runs' decision records (a list here, the
    ``decision`` XComs there), then ``reused`` or a model call; Airflow itself is not started."""
    from datetime import datetime, timedelta, timezone

    from airflow_agent_provider.agents import Claude, choose_route
    from airflow_agent_provider.agents.memory import failure_signature, recall, reused
    from airflow_agent_provider.contracts import Usage
    from airflow_agent_provider.testing import Reply

    validations = [failing_validation(str(work_dir / f"backfill_{day}"), 10 + 7 * day) for day in range(days)]
    figures = {}
    for memory in (False, True):
        fake.reset()
        fake.add(Reply.json(ROUTE_REPLY), match={"schema_title": "RouteDecision"})
        records: list[dict[str, Any]] = []
        usage, routes, reuses = Usage(), set(), 0
        for day, validation in enumerate(validations):
            run_id = f"backfill__2026-10-{day + 1:02d}"
            signature = failure_signature([validation], ROUTES)
            found = (
                recall(
                    records,
                    signature=signature,
                    options=sorted(ROUTES),
                    now=datetime.now(timezone.utc),
                    reuse_for=timedelta(days=30),
                    current_run_id=run_id,
                )
                if memory
                else None
            )
            if found is not None:
                decision = reused(found, run_id=run_id)
                reuses += 1
            else:
                decision = choose_route(Claude.of(client), validations=[validation], branches=ROUTES)
                decision = decision.model_copy(
                    update={"run_id": run_id, "signature": signature, "decided_at": datetime.now(timezone.utc)}
                )
            records.append(decision.model_dump(mode="json"))
            usage, routes = usage + decision.usage, routes | {decision.route}
        figures["with_memory" if memory else "without_memory"] = {
            "runs": days,
            "requests": len(fake.messages_requests),
            "reused": reuses,
            "routes": sorted(routes),
            **_usage_row(usage),
        }
    return figures
