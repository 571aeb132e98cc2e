"""The provider's facets against the OpenLineage spec and its shipped schemas; the checker fails on bad input."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_agent_provider.contracts import DatasetOrigin, Issue, RouteDecision, StageResult, parse_quality_rules
from airflow_agent_provider.lineage import decisions, facets
from tests.lineage.spec import event_errors

ORIGIN = DatasetOrigin(namespace="postgres://db:5432", name="dw.public.events")


def _event(
    *, run_facets: dict[str, Any] | None = None, inputs: list[Any] = (), outputs: list[Any] = ()
) -> dict[str, Any]:
    """A RunEvent as the listener's client serializes it (through OpenLineage's own serde)."""
    from openlineage.client.serde import Serde

    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-10T00:00:00+00:00",
        "producer": "https://example.com/tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": "01a1c2c1-2400-784d-bca7-cb589b40359b",
            "facets": {k: Serde.to_dict(v) for k, v in (run_facets or {}).items()},
        },
        "job": {"namespace": "tests", "name": "dag.task", "facets": {}},
        "inputs": [Serde.to_dict(d) for d in inputs],
        "outputs": [Serde.to_dict(d) for d in outputs],
    }


class TestRouteDecisionFacet:
    @pytest.mark.parametrize(
        ("decision", "decided_by"),
        [
            pytest.param(RouteDecision(route="transform", confidence=1.0), "rule", id="all-passed"),
            pytest.param(RouteDecision(route="quarantine", model="claude-x", confidence=0.8), "claude", id="claude"),
            pytest.param(
                RouteDecision(route="quarantine", model="m", fallback_used=True, fallback_reason="rate_limited: 429"),
                "fallback", id="fallback",
            ),
            pytest.param(
                RouteDecision(route="escalate", model="m", proposed_route="quarantine", approved_by="ada"),
                "person", id="person",
            ),
        ],
    )  # fmt: skip
    def test_who_decided_is_recorded_and_the_event_meets_both_schemas(
        self, decision: RouteDecision, decided_by: str
    ) -> None:
        facet = decisions.route_facet(decision.model_copy(update={"options": ["escalate", "quarantine", "transform"]}))

        event = _event(run_facets={decisions.ROUTE_FACET: facet})

        assert event_errors(event) == []
        recorded = event["run"]["facets"][decisions.ROUTE_FACET]
        assert (recorded["route"], recorded["decidedBy"]) == (decision.route, decided_by)
        assert recorded["_schemaURL"].split("#")[0] == decisions.facet_schema("AgentRouteDecisionRunFacet")["$id"]

    def test_usage_counts_every_input_token_and_the_cost(self) -> None:
        usage = {
            "model_calls": 2,
            "input_tokens": 100,
            "cache_read_input_tokens": 50,
            "output_tokens": 7,
            "cost_usd": 0.01,
        }
        facet = decisions.route_facet(RouteDecision(route="t", model="m", usage=usage))
        assert (facet.usage.modelCalls, facet.usage.inputTokens, facet.usage.outputTokens, facet.usage.costUsd) == (
            2, 150, 7, 0.01,
        )  # fmt: skip


class TestRemediationFacet:
    def test_each_iteration_keeps_its_actions_and_outcome(self) -> None:
        iterations = [
            {"iteration": 1, "plan": {"actions": [{"action": "rename_column"}]}, "outcome": "fail", "issues": ["x"]},
            {"iteration": 2, "plan": {"actions": [{"action": "cast_column"}]}, "outcome": "pass", "issues": []},
        ]
        facet = decisions.remediation_facet("events", "pass", iterations, usage={"model_calls": 2, "cost_usd": 0.02})

        event = _event(run_facets={decisions.REMEDIATION_FACET: facet})

        assert event_errors(event) == []
        recorded = event["run"]["facets"][decisions.REMEDIATION_FACET]
        assert [(i["iteration"], i["actions"], i["outcome"], i["remainingIssues"]) for i in recorded["iterations"]] == [
            (1, ["rename_column"], "fail", 1),
            (2, ["cast_column"], "pass", 0),
        ]


class TestQualityFacets:
    def test_a_rule_fails_when_validation_recorded_an_issue_under_its_label(self) -> None:
        rules = parse_quality_rules(
            [{"column": "id", "rule": "unique"}, {"column": "kind", "rule": "in_list", "values": ["a"]}]
        )
        result = StageResult(
            stage="validate", status="fail",
            issues=[Issue(type="in_list_violation", column="kind", rule="in_list(kind)", affected_rows=3)],
            metrics={"row_count": 10, "null_counts": {"id": 0, "kind": 2}, "schema_match": True},
        )  # fmt: skip

        quality = facets.quality_facets(result, rules, checked_schema=True)
        event = _event(inputs=[facets.input_dataset(ORIGIN, {"id": "integer", "kind": "string"}, quality)])

        assert event_errors(event) == []
        facet = event["inputs"][0]["inputFacets"]
        assert [
            (a["assertion"], a.get("column"), a["success"]) for a in facet["dataQualityAssertions"]["assertions"]
        ] == [
            ("unique", "id", True),
            ("in_list", "kind", False),
            ("schema_match", None, True),
        ]
        assert facet["dataQualityMetrics"]["rowCount"] == 10
        assert facet["dataQualityMetrics"]["columnMetrics"]["kind"]["nullCount"] == 2


class TestTheSpecCheckItself:
    def test_a_facet_off_its_schema_and_an_unknown_schema_are_both_reported(self) -> None:
        rules = parse_quality_rules([{"column": "id", "rule": "unique"}])
        result = StageResult(stage="validate", status="pass", metrics={"row_count": 1})
        event = _event(inputs=[facets.input_dataset(ORIGIN, None, facets.quality_facets(result, rules, False))])
        event["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"][0]["success"] = "yes"
        event["run"]["facets"]["made_up"] = {
            "_producer": "x",
            "_schemaURL": "https://example.com/nowhere.json#/$defs/X",
        }
        del event["job"]["name"]

        problems = event_errors(event)

        assert any("'name' is a required property" in p for p in problems)
        assert any("dataQualityAssertions" in p and "'yes' is not of type 'boolean'" in p for p in problems)
        assert any("made_up" in p and "no schema known" in p for p in problems)
