"""What a call costs: per-model prices (USD per million tokens) and the cost of a message's usage.

Figures from the Anthropic pricing pages as of November 2026 (see docs/claude.md). Pass your own
table (``{model: ModelPrice}`` or ``{model: {"input": ..., ...}}``) to override them. A model that
is not in the table is priced at the most expensive known tier, with a warning: a budget never
reads $0 because a model name was new.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_agent_provider.contracts import Usage

log = logging.getLogger(__name__)

_DATE_SUFFIX = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


_OPUS_4 = ModelPrice(5, 25, 6.25, 10, 0.50)
_SONNET_4 = ModelPrice(3, 15, 3.75, 6, 0.30)
_SONNET_5 = ModelPrice(2, 10, 2.50, 4, 0.20)
_FABLE_5 = ModelPrice(10, 50, 12.50, 20, 1.00)
_FABLE_5_1 = ModelPrice(10, 50, 12.50, 20, 0.25)

PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-5": _OPUS_4,
    "claude-opus-4-6": _OPUS_4,
    "claude-opus-4-7": _OPUS_4,
    "claude-opus-4-8": _OPUS_4,
    "claude-opus-5": _OPUS_4,
    "claude-opus-5-5": ModelPrice(4, 20, 5, 8, 0.20),
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-5": _SONNET_5,
    "claude-sonnet-5-5": _SONNET_5,
    "claude-haiku-4-5": ModelPrice(1, 5, 1.25, 2, 0.10),
    "claude-haiku-5-5": ModelPrice(0.10, 0.50, 0.125, 0.20, 0.01),  # prompts up to 100k tokens
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-fable-5-1": _FABLE_5_1,
    "claude-mythos-5-1": _FABLE_5_1,
    "claude-fable-5-2": _FABLE_5_1,
    "claude-mythos-5-2": _FABLE_5_1,
}
"""Known models; dated snapshots (``claude-haiku-4-5-20251001``) use their family's price."""

PriceTable = Mapping[str, ModelPrice | Mapping[str, float]]


def price_of(model: str, prices: PriceTable | None = None) -> ModelPrice:
    """The price of ``model``; an unknown model gets the most expensive known price and a warning."""
    table = {name: _as_price(value) for name, value in (prices if prices is not None else PRICES).items()}
    for name in (model, _DATE_SUFFIX.sub("", model)):
        if name in table:
            return table[name]
    dearest = max(table.values(), key=lambda p: (p.output, p.input), default=_FABLE_5)
    log.warning("No price known for model %r; costing it at the most expensive known tier %s", model, dearest)
    return dearest


def _as_price(value: ModelPrice | Mapping[str, float]) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    try:
        return ModelPrice(**{k: float(v) for k, v in value.items()})
    except TypeError as err:
        fields = "input, output, cache_write_5m, cache_write_1h, cache_read"
        raise ValueError(f"a price needs exactly the fields {fields} (USD per million tokens): {err}") from err


def usage_of(message_usage: Any, model: str, prices: PriceTable | None = None) -> Usage:
    """One billed call's ``Usage`` (tokens and cost) from an SDK ``message.usage``."""
    inp = int(getattr(message_usage, "input_tokens", 0) or 0)
    out = int(getattr(message_usage, "output_tokens", 0) or 0)
    written = int(getattr(message_usage, "cache_creation_input_tokens", 0) or 0)
    read = int(getattr(message_usage, "cache_read_input_tokens", 0) or 0)
    written_1h = int(getattr(getattr(message_usage, "cache_creation", None), "ephemeral_1h_input_tokens", 0) or 0)
    price = price_of(model, prices)
    dollars = (
        inp * price.input
        + out * price.output
        + (written - written_1h) * price.cache_write_5m
        + written_1h * price.cache_write_1h
        + read * price.cache_read
    ) / 1_000_000
    return Usage(
        model_calls=1,
        input_tokens=inp,
        output_tokens=out,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=read,
        cost_usd=round(dollars, 8),
    )


def input_cost(model: str, tokens: int, prices: PriceTable | None = None) -> float:
    """What ``tokens`` uncached input tokens cost on ``model`` (a pre-flight budget estimate)."""
    return tokens * price_of(model, prices).input / 1_000_000
