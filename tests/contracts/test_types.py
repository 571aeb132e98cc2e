"""Logical types and identifiers: one definition each, and every layer reads them alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel, ValidationError

from airflow_agent_provider.contracts import DatasetRef
from airflow_agent_provider.contracts.identifiers import Identifier, check_name
from airflow_agent_provider.contracts.types import DUCKDB_TYPES, LOGICAL_TYPES, logical_type
from airflow_agent_provider.engines.sqlsafe import TableName, identifier
from airflow_agent_provider.exceptions import UnsafeIdentifier


class TestLogicalTypes:
    def test_every_logical_type_travels_as_a_duckdb_type_that_reads_back_as_itself(self) -> None:
        assert set(DUCKDB_TYPES) == set(LOGICAL_TYPES)
        assert {logical: logical_type(DUCKDB_TYPES[logical]) for logical in LOGICAL_TYPES} == {
            logical: logical for logical in LOGICAL_TYPES
        }

    @pytest.mark.parametrize(
        ("duckdb_type", "expected"),
        [
            pytest.param("HUGEINT", "integer", id="hugeint"),
            pytest.param("DECIMAL(38,0)", "float", id="decimal"),
            pytest.param("TIMESTAMP WITH TIME ZONE", "timestamp", id="timestamptz"),
            pytest.param("INTERVAL", "string", id="interval_is_text"),
            pytest.param("INTEGER[]", "string", id="list_is_text"),
            pytest.param("STRUCT(a INTEGER)", "string", id="struct_is_text"),
            pytest.param("UUID", "string", id="other_is_text"),
            pytest.param('"NULL"', None, id="null_type_has_no_type_yet"),
        ],
    )
    def test_duckdb_types_read_back_as_logical_types(self, duckdb_type: str, expected: str | None) -> None:
        assert logical_type(duckdb_type) == expected

    def test_a_dataset_names_a_column_of_nulls_only_with_no_type(self) -> None:
        ref = DatasetRef(uri="x", row_count=1, columns={"id": "integer", "nothing": None})
        assert ref.model_dump(mode="json")["columns"] == {"id": "integer", "nothing": None}

    def test_an_older_results_null_column_still_reads(self) -> None:
        ref = DatasetRef.model_validate({"uri": "x", "row_count": 1, "columns": {"nothing": "null"}})
        assert ref.columns == {"nothing": None}

    def test_a_column_type_outside_the_logical_types_is_refused(self) -> None:
        with pytest.raises(ValidationError, match=r"columns\.amount"):
            DatasetRef.model_validate({"uri": "x", "row_count": 1, "columns": {"amount": "money"}})


class _Named(BaseModel):
    name: Identifier


NAMES = [
    pytest.param("user_id", True, id="plain"),
    pytest.param("_x9", True, id="leading_underscore"),
    pytest.param("a" * 63, True, id="63_chars"),
    pytest.param("a" * 64, False, id="64_chars"),
    pytest.param("9lives", False, id="leading_digit"),
    pytest.param("a-b", False, id="dash"),
    pytest.param("a\n", False, id="trailing_newline"),
    pytest.param('x"; DROP TABLE t; --', False, id="injection"),
    pytest.param("", False, id="empty"),
]


class TestIdentifiers:
    @pytest.mark.parametrize(("name", "plain"), NAMES)
    def test_every_layer_draws_the_same_line(self, name: str, plain: bool) -> None:
        verdicts = {
            "check_name": _accepts(lambda: check_name(name), ValueError),
            "sqlsafe.identifier": _accepts(lambda: identifier(name), UnsafeIdentifier),
            "TableName.parse": _accepts(lambda: TableName.parse(name), UnsafeIdentifier),
            "pydantic Identifier": _accepts(lambda: _Named(name=name), ValidationError),
        }
        assert verdicts == dict.fromkeys(verdicts, plain)


def _accepts(call: Callable[[], object], error: type[Exception]) -> bool:
    try:
        call()
    except error:
        return False
    return True
