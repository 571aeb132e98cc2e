"""Pricing: per-model cost of a call's usage; unknown models never cost $0."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_agent_provider.agents.claude import Claude
from airflow_agent_provider.agents.models import SMALL_MODEL, STRONG_MODEL, TIERS
from airflow_agent_provider.agents.pricing import PRICES, ModelPrice, price_of, usage_of


def message_usage(**counts: Any) -> Any:
    import anthropic

    fields = {"input_tokens": 0, "output_tokens": 0, **counts}
    return anthropic.types.Usage(**fields)


class TestUsageOf:
    def test_prices_every_token_kind_of_a_known_model(self) -> None:
        usage = usage_of(
            message_usage(
                input_tokens=1_000_000,
                output_tokens=100_000,
                cache_creation_input_tokens=200_000,
                cache_read_input_tokens=400_000,
            ),
            "claude-haiku-4-5",
        )
        # 1M x $1 + 0.1M x $5 + 0.2M x $1.25 + 0.4M x $0.10
        assert usage.cost_usd == pytest.approx(1.0 + 0.5 + 0.25 + 0.04)
        assert (usage.model_calls, usage.input_tokens, usage.cache_read_input_tokens) == (1, 1_000_000, 400_000)

    def test_one_hour_cache_writes_use_their_own_price(self) -> None:
        import anthropic

        counts = message_usage(
            cache_creation_input_tokens=1_000_000,
            cache_creation=anthropic.types.CacheCreation(
                ephemeral_5m_input_tokens=0, ephemeral_1h_input_tokens=1_000_000
            ),
        )
        assert usage_of(counts, "claude-sonnet-4-6").cost_usd == pytest.approx(6.0)

    def test_a_dated_snapshot_costs_what_its_family_costs(self) -> None:
        assert price_of("claude-haiku-4-5-20251001") == PRICES["claude-haiku-4-5"]

    def test_an_unknown_model_costs_the_dearest_known_price_and_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            usage = usage_of(message_usage(input_tokens=1_000_000), "claude-future-9")
        dearest = max(p.input for p in PRICES.values())
        assert usage.cost_usd == pytest.approx(dearest) and usage.cost_usd > 0
        assert "claude-future-9" in caplog.text

    def test_a_table_passed_in_overrides_the_defaults(self) -> None:
        price = {"input": 2, "output": 4, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0}
        table = {"my-gateway-model": price}
        usage = usage_of(message_usage(input_tokens=500_000, output_tokens=500_000), "my-gateway-model", table)
        assert usage.cost_usd == pytest.approx(3.0)
        assert price_of("my-gateway-model", {"my-gateway-model": ModelPrice(1, 1, 1, 1, 1)}).input == 1

    def test_a_malformed_price_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="input, output"):
            price_of("x", {"x": {"input": 1}})


class TestModelTiers:
    def test_the_small_model_diagnoses_and_the_strong_one_decides(self) -> None:
        assert TIERS == {"diagnose": SMALL_MODEL, "route": STRONG_MODEL, "fix": STRONG_MODEL, "sql": STRONG_MODEL}

    def test_tier_defaults_are_current_priced_sdk_models(self) -> None:
        from typing import get_args

        from anthropic.resources.messages.messages import DEPRECATED_MODELS
        from anthropic.types.model import Model

        known = set(get_args(get_args(Model)[0]))
        for model in set(TIERS.values()):
            assert model in known and model in PRICES and model not in DEPRECATED_MODELS

    def test_operator_model_beats_connection_model_beats_tier(self) -> None:
        assert Claude(object, model="op-model", default_model=lambda: "conn-model").model_for("route") == "op-model"
        assert Claude(object, default_model=lambda: "conn-model").model_for("route") == "conn-model"
        assert Claude(object).model_for("route") == STRONG_MODEL
        assert Claude(object).model_for("diagnose") == SMALL_MODEL

    def test_an_unknown_point_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            Claude(object).model_for("sing")  # type: ignore[arg-type]
