"""Every DAG in dags/ parses, is documented and tagged, and renders on runs without a logical date."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parent.parent / "dags"
# Context keys that exist only when the run has a logical date (a manual run may have none).
DATED_KEYS = frozenset(
    {"ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "logical_date", "data_interval_start"}
    | {"data_interval_end", "prev_data_interval_start_success", "prev_data_interval_end_success"}
)
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)


@pytest.fixture(scope="module")
def dag_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def undefaulted_dated_keys(template: str) -> set[str]:
    """Dated context keys a template uses in an expression that has no ``default(...)`` for them."""
    import jinja2
    from jinja2 import meta

    found: set[str] = set()
    for expression in _EXPRESSION.findall(template):
        names = meta.find_undeclared_variables(jinja2.Environment().parse("{{" + expression + "}}"))
        if names & DATED_KEYS and "default(" not in expression.replace(" ", ""):
            found |= names & DATED_KEYS
    return found


class TestDagIntegrity:
    def test_every_dag_file_imports(self, dag_bag: Any) -> None:
        assert dag_bag.import_errors == {}
        assert len(dag_bag.dag_ids) >= len(list(DAGS.glob("*.py")))

    def test_every_dag_has_tags_and_docs(self, dag_bag: Any) -> None:
        for dag_id in dag_bag.dag_ids:
            dag = dag_bag.dags[dag_id]
            assert dag.tags, f"{dag_id} has no tags"
            assert dag.doc_md and len(dag.doc_md) > 80, f"{dag_id} has no doc_md"

    def test_no_template_needs_a_logical_date(self, dag_bag: Any) -> None:
        offenders = {}
        for dag_id in dag_bag.dag_ids:
            for task in dag_bag.dags[dag_id].tasks:
                for field in task.template_fields:
                    for text in _strings(getattr(task, field, None)):
                        if keys := undefaulted_dated_keys(text):
                            offenders[f"{dag_id}.{task.task_id}.{field}"] = sorted(keys)
        assert offenders == {}

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            pytest.param("{{ ds }}", {"ds"}, id="bare-ds"),
            pytest.param("x {{ data_interval_end.isoformat() }} y", {"data_interval_end"}, id="method-call"),
            pytest.param("{{ ds | default(dag_run.run_after.date()) }}", set(), id="defaulted"),
            pytest.param("{{ run_id }}", set(), id="always-present"),
        ],
    )
    def test_the_logical_date_check_itself(self, template: str, expected: set[str]) -> None:
        assert undefaulted_dated_keys(template) == expected
