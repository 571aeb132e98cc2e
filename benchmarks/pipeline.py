"""Our pipeline, in-process: the engines called the way the operators call them, stage by stage.

extract (the three CSV file sources, concurrently) -> validate each dataset (schema and quality
rules) -> transform (the target's SQL steps) -> load (upsert by the target's key). No Airflow:
the operators are thin shells over these calls, and Airflow's own start-up is not what is
measured. Each stage result is also serialised as the operator would return it
(``model_dump(mode="json")``) to report its XCom size.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.runner import Stopwatch
from benchmarks.workload import QUALITY_RULES, SCHEMAS, Target, Workload


def sources(workload: Workload) -> list[dict[str, Any]]:
    """The three file sources of the workload, as a DAG author writes them."""
    return [
        {"name": name, "type": "file", "path": workload.path(name), "format": "csv"}
        for name in ("events", "users", "campaigns")
    ]


def xcom_bytes(result: Any) -> int:
    """What the operator would push to XCom: the stage result as JSON, in bytes."""
    return len(json.dumps(result.model_dump(mode="json")).encode())


def run_pipeline(
    workload: Workload, url: str, target: Target, staging: str, *, strategy: str = "upsert"
) -> dict[str, Any]:
    """Extract, validate, transform and load ``target`` (``strategy``, keyed by the target's key); returns
    stage timings and XCom sizes."""
    from airflow_agent_provider.contracts import parse_sources
    from airflow_agent_provider.engines.extract import extract_sources

    clock, results = Stopwatch(), {}
    with clock("extract"):
        results["extract"] = extract_sources(
            parse_sources(sources(workload)), dataset_uri=lambda name: f"{staging}/extract/{name}"
        )
    inputs = results["extract"].datasets
    with clock("validate"):
        for name, ref in inputs.items():
            results[f"validate_{name}"] = _validate(name, ref)
    with clock("transform"):
        results["transform"] = _transform(inputs, target, f"{staging}/transform/{target.table}")
    with clock("load"):
        results["load"] = _load(results["transform"].dataset(target.table), url, target, strategy)
    return clock.summary() | {
        "rows": results["load"].metrics["rows_loaded"],
        "xcom_bytes": {stage: xcom_bytes(result) for stage, result in results.items()},
    }


def _validate(name: str, ref: Any) -> Any:
    from airflow_agent_provider.contracts import parse_quality_rules
    from airflow_agent_provider.engines.validate import validate_dataset

    result = validate_dataset(
        ref, dataset=name, expected_schema=SCHEMAS[name], quality_rules=parse_quality_rules(QUALITY_RULES[name])
    )
    if not result.passed:
        raise RuntimeError(f"validation of {name} failed: {[issue.summary() for issue in result.issues]}")
    return result


def _transform(inputs: Any, target: Target, output_uri: str) -> Any:
    from airflow_agent_provider.contracts import parse_transformations
    from airflow_agent_provider.engines.transform import run_transformations

    return run_transformations(
        inputs,
        parse_transformations(target.transformations()),
        output_dataset=target.table,
        output_uri=output_uri,
    )


def _load(ref: Any, url: str, target: Target, strategy: str) -> Any:
    import sqlalchemy as sa

    from airflow_agent_provider.engines.load import load_dataset

    engine = sa.create_engine(url)
    try:
        return load_dataset(
            ref, engine=engine, target_table=target.table, load_strategy=strategy, upsert_key=list(target.key)
        )
    finally:
        engine.dispose()
