"""Every parameter an operator takes is documented in its docstring (``:param name:``), as the
reference docs and Airflow's UI show them."""

from __future__ import annotations

import inspect

import pytest

from airflow_agent_provider import operators


def _own(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if c.__module__.startswith("airflow_agent_provider")]


def _params(cls: type) -> set[str]:
    return {
        p
        for c in _own(cls)
        if "__init__" in c.__dict__
        for p in inspect.signature(c.__init__).parameters
        if p not in ("self", "args", "kwargs")
    }


OPERATORS = [n for n in operators.__all__ if isinstance(getattr(operators, n), type) and _params(getattr(operators, n))]


def test_the_operators_are_all_checked() -> None:
    assert {"ExtractOperator", "ValidateOperator", "TransformOperator", "LoadOperator"} <= set(OPERATORS)


@pytest.mark.parametrize("name", OPERATORS)
def test_every_parameter_is_documented(name: str) -> None:
    cls = getattr(operators, name)
    docs = "".join(c.__doc__ or "" for c in _own(cls))
    assert sorted(p for p in _params(cls) if f":param {p}:" not in docs) == []
