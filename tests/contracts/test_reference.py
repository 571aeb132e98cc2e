"""docs/reference.md is what scripts/reference.py writes from the specs, and every rule example on it holds."""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest

from airflow_agent_provider.contracts import DatasetRef, parse_quality_rules, specs
from airflow_agent_provider.engines.staging import DatasetWriter
from airflow_agent_provider.engines.validate import validate_dataset

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_script", ROOT / "scripts" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_page_is_the_generated_one() -> None:
    page = (ROOT / "docs" / "reference.md").read_text()
    assert page == _script().render(), "docs/reference.md is stale: run `make reference` and commit it"


def test_every_rule_has_a_reference_entry() -> None:
    assert list(specs.RULE_DOCS) == list(specs.RULE_NAMES) == list(typing.get_args(specs.RuleName))


def test_check_mode_reports_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script()
    monkeypatch.setattr(script, "PAGE", tmp_path / "reference.md")
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0


def _stage(root: str, name: str, columns: dict[str, list[object]]) -> DatasetRef:
    table = pa.table(columns)
    writer = DatasetWriter(f"{root}/dag/run/task/{name}")
    writer.write(table)
    return writer.finish(table.schema)


@pytest.mark.parametrize("name", specs.RULE_NAMES)
def test_rule_example_finds_the_documented_issue(name: str, staging_root: str) -> None:
    doc = specs.RULE_DOCS[name]
    ref = _stage(staging_root, "example", doc.data)
    others = {other: _stage(staging_root, other, data) for other, data in doc.others.items()}
    result = validate_dataset(
        ref,
        dataset="example",
        quality_rules=parse_quality_rules([doc.example]),
        reference_time=specs.EXAMPLE_INTERVAL_END,
        **({"others": others} if others else {}),
    )
    assert [issue.type for issue in result.issues] == [doc.issue], [i.message for i in result.issues]
    if doc.affected_rows is not None:
        assert result.issues[0].affected_rows == doc.affected_rows
