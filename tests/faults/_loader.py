"""A worker process that loads one staged dataset, for the crash tests to kill in the middle.

    python -m tests.faults._loader '{"uri": ..., "url": ..., "table": ..., "strategy": ..., "key": [...]}'

It runs the real ``load_dataset`` (nothing patched) and prints one line when it ends: ``done {metrics}``
(exit 0) or ``error {"type": ..., "message": ..., "cause": ...}`` (exit 3). A crash test SIGKILLs it
before that line is printed.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> int:
    import sqlalchemy as sa

    from airflow_agent_provider.contracts import DatasetRef
    from airflow_agent_provider.engines.load import load_dataset
    from airflow_agent_provider.exceptions import AgentProviderError

    args: dict[str, Any] = json.loads(argv[0])
    engine = sa.create_engine(args["url"])
    print("started", flush=True)
    try:
        result = load_dataset(
            DatasetRef(uri=args["uri"], row_count=0),
            engine=engine,
            target_table=args["table"],
            load_strategy=args["strategy"],
            upsert_key=args.get("key"),
            batch_rows=int(args.get("batch_rows", 50_000)),
        )
    except AgentProviderError as err:
        cause = repr(err.__cause__) if err.__cause__ is not None else None
        print("error", json.dumps({"type": type(err).__name__, "message": str(err), "cause": cause}), flush=True)
        return 3
    finally:
        engine.dispose()
    print("done", json.dumps(result.metrics, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
