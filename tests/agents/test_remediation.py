"""propose_fix and the remediation loop over real staged Parquet, with FakeClaude proposing plans."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_agent_provider.agents.calls import CallPolicy
from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.fixes import propose_fix
from airflow_agent_provider.agents.remediation import RemediationRequest, remediate
from airflow_agent_provider.contracts import DatasetRef, StageResult, parse_quality_rules
from airflow_agent_provider.engines import staging
from airflow_agent_provider.engines.validate import validate_dataset
from airflow_agent_provider.exceptions import ModelCallError
from airflow_agent_provider.testing import FakeClaude, Fault
from tests.support.fix_plans import CAST, RENAME, USELESS, plan

EXPECTED = {"user_id": "integer", "amount": "float"}
RULES = parse_quality_rules([{"rule": "not_null", "column": "user_id"}])
FAST = CallPolicy(backoff_s=0.02, deadline_s=20)


@pytest.fixture
def payments(staging_root: str) -> DatasetRef:
    import pandas as pd

    writer = staging.DatasetWriter(f"{staging_root}/run/extract/payments")
    writer.write(pd.DataFrame({"uid": [1, 2, 3, 4], "amount": ["10.5", "20", "3.25", "7"]}))
    return writer.finish()


@pytest.fixture
def task(payments: DatasetRef, staging_root: str) -> RemediationRequest:
    validation = validate_dataset(payments, dataset="payments", expected_schema=EXPECTED, quality_rules=RULES)
    assert not validation.passed
    return RemediationRequest(
        dataset="payments",
        ref=payments,
        validation=validation,
        uri_for=lambda name: f"{staging_root}/run/remediate/{name}",
        output_dataset="payments",
        expected_schema=EXPECTED,
        quality_rules=RULES,
    )


def run(client: Any, task: RemediationRequest, **kwargs: Any) -> Any:
    return remediate(Claude.of(client, policy=FAST), task, **kwargs)


def rows(ref: DatasetRef) -> list[tuple[Any, ...]]:
    con = staging.connect()
    try:
        return con.execute(f"SELECT user_id, amount FROM {staging.scan_sql(ref.uri)} ORDER BY user_id").fetchall()
    finally:
        con.close()


class TestRemediate:
    def test_fixes_a_renamed_column_and_a_castable_type_in_two_iterations(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan(RENAME), times=1)
        fake.add(plan(CAST), times=1)
        outcome = run(client, task)
        assert outcome.passed and len(outcome.iterations) == 2
        assert [i["outcome"] for i in outcome.iterations] == ["fail", "pass"]
        assert outcome.fixed is not None and outcome.fixed.columns == {"user_id": "integer", "amount": "float"}
        assert rows(outcome.fixed) == [(1, 10.5), (2, 20.0), (3, 3.25), (4, 7.0)]
        assert outcome.usage.model_calls == 2

    def test_tells_the_model_what_earlier_plans_left_failing(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan(RENAME), times=1)
        fake.add(plan(CAST), times=1)
        run(client, task)
        second = fake.messages_requests[1].json["messages"][0]["content"]
        history = json.loads(second.split("Earlier plans")[1].split("<data>\n")[1].split("\n</data>")[0])
        assert history[0]["plan"]["actions"] == [RENAME] and history[0]["outcome"] == "fail"
        assert any("amount" in issue for issue in history[0]["issues"])

    def test_gives_up_after_max_iterations_of_useless_plans_with_every_plan_recorded(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan(USELESS))
        outcome = run(client, task, max_iterations=3)
        assert not outcome.passed and outcome.fixed is None
        assert outcome.stopped_because == "still failing after 3 iteration(s)"
        assert [i["plan"]["actions"] for i in outcome.iterations] == [[USELESS]] * 3
        assert any("user_id" in issue for issue in outcome.remaining_issues)

    def test_a_plan_that_does_not_fit_the_data_is_recorded_and_the_loop_goes_on(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan({"action": "rename_column", "column": "no_such_column", "to": "user_id"}), times=1)
        fake.add(plan(RENAME, CAST), times=1)
        outcome = run(client, task)
        assert outcome.passed
        assert [i["outcome"] for i in outcome.iterations] == ["plan_failed", "pass"]
        assert "no_such_column" in outcome.iterations[0]["error"]

    def test_stops_when_the_model_is_unavailable(self, fake: FakeClaude, client: Any, task: RemediationRequest) -> None:
        fake.add(Fault.overloaded())
        outcome = run(client, task)
        assert not outcome.passed and outcome.iterations == []
        assert "overloaded" in (outcome.stopped_because or "")

    def test_a_passing_validation_needs_no_model(self, fake: FakeClaude, client: Any, payments: DatasetRef) -> None:
        passing = StageResult(stage="validate", status="pass", datasets={"payments": payments})
        outcome = run(client, RemediationRequest("payments", payments, passing, str, "payments"))
        assert outcome.passed and outcome.fixed == payments and fake.messages_requests == []


class TestProposeFix:
    def test_the_schema_offers_only_the_allowed_actions(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan(CAST))
        fix, usage = propose_fix(Claude.of(client, policy=FAST), task.validation, allowed_actions=["cast_column"])
        assert fix.actions[0].action == "cast_column" and usage.model_calls == 1
        schema = fake.messages_requests[0].json["output_config"]["format"]["schema"]
        assert schema["title"] == "FixPlan"
        assert "CastColumn" in json.dumps(schema) and "DropRows" not in json.dumps(schema)

    def test_an_action_outside_the_allowed_set_is_off_contract(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        fake.add(plan({"action": "drop_rows", "rule": {"column": "amount", "op": "is_null"}}))
        with pytest.raises(ModelCallError) as info:
            propose_fix(
                Claude.of(client, policy=FAST), task.validation, allowed_actions=["rename_column", "cast_column"]
            )
        assert info.value.reason == "off_contract" and len(fake.messages_requests) == 3

    def test_an_unknown_allowed_action_is_refused_before_any_call(
        self, fake: FakeClaude, client: Any, task: RemediationRequest
    ) -> None:
        with pytest.raises(ValueError, match="allowed_actions"):
            propose_fix(Claude.of(client, policy=FAST), task.validation, allowed_actions=["truncate_table"])
        assert fake.messages_requests == []
