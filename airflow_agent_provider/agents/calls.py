"""One structured call to Claude, bounded in time, attempts and money, validated locally.

Every judgment point goes through :func:`call_structured`:

- the answer is requested as native JSON-schema output (``output_config.format``), built from a
  pydantic model with ``anthropic.transform_schema``; no ``temperature``, no forced ``tool_choice``;
- a ``stop_reason`` other than ``end_turn`` (refusal, max_tokens, ...) is an error, never parsed;
- the text is validated with pydantic; an off-contract answer is re-asked with a short repair
  message (the validation errors, not the data) at most ``policy.repair_attempts`` times;
- the client must be built with ``max_retries=0``: this loop retries 429/529/5xx/timeouts itself,
  honours ``retry-after`` up to ``policy.max_retry_after_s`` and gives up at once when the server
  asks for more time than the decision has left (``policy.deadline_s``);
- the budget is checked before every HTTP attempt; every billed answer is priced and charged.

Failures raise ``ModelCallError(reason, message)`` carrying the usage already spent.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from airflow_agent_provider.agents.pricing import PriceTable, input_cost, usage_of
from airflow_agent_provider.contracts import Usage
from airflow_agent_provider.exceptions import BudgetExhausted, ModelCallError

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

_MAX_REPAIR_PROBLEMS = 8


@dataclass(frozen=True)
class CallPolicy:
    """How long and how often one decision may try.

    :param max_attempts: HTTP attempts per request (the first one plus transient retries).
    :param deadline_s: wall-clock bound of the whole decision, retries and repairs included.
    :param timeout_s: bound of one HTTP attempt (never more than what is left of the deadline).
    :param max_retry_after_s: the longest ``retry-after`` wait honoured before retrying.
    :param backoff_s: first backoff without a ``retry-after`` (doubles, with jitter).
    :param max_backoff_s: the longest backoff without a ``retry-after``.
    :param repair_attempts: how many times an off-contract answer is re-asked.
    :param max_tokens: output budget of one answer.
    """

    max_attempts: int = 4
    deadline_s: float = 60.0
    timeout_s: float = 30.0
    max_retry_after_s: float = 10.0
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    repair_attempts: int = 2
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.repair_attempts < 0 or self.max_tokens < 1:
            raise ValueError("max_attempts and max_tokens must be >= 1 and repair_attempts >= 0")
        if min(self.deadline_s, self.timeout_s) <= 0 or min(self.max_retry_after_s, self.backoff_s) < 0:
            raise ValueError("deadline_s and timeout_s must be positive, waits non-negative")


@dataclass
class Budget:
    """What a run (or a task) may still spend on models; checked before every HTTP attempt.

    :param max_cost_usd: stop once this much is spent, or the next request's input alone would pass it.
    :param max_model_calls: stop after this many billed calls.
    :param spent: what was spent before (e.g. by earlier tasks of the run); grows with every call.
    """

    max_cost_usd: float | None = None
    max_model_calls: int | None = None
    spent: Usage = field(default_factory=Usage)

    def check(self, model: str, estimated_input_tokens: int, prices: PriceTable | None = None) -> None:
        """Raise ``BudgetExhausted`` when no further call may be made."""
        calls, limit = self.spent.model_calls, self.max_model_calls
        if limit is not None and calls >= limit:
            raise BudgetExhausted(f"model call budget spent: {calls} of {limit} call(s) made")
        if self.max_cost_usd is None:
            return
        upcoming = input_cost(model, estimated_input_tokens, prices)
        if self.spent.cost_usd + upcoming > self.max_cost_usd:
            raise BudgetExhausted(
                f"cost budget spent: ${self.spent.cost_usd:.4f} of ${self.max_cost_usd:.4f} used, "
                f"the next call needs about ${upcoming:.4f} of input"
            )

    def charge(self, usage: Usage) -> None:
        self.spent = self.spent + usage


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A validated answer and what it cost."""

    value: T
    usage: Usage
    model: str
    attempts: int
    repairs: int


def call_structured(
    client: Any,
    *,
    model: str,
    system: str,
    user: str,
    output: type[T],
    policy: CallPolicy | None = None,
    budget: Budget | None = None,
    prices: PriceTable | None = None,
    check: Callable[[T], None] | None = None,
) -> Answer[T]:
    """Ask ``model`` for an ``output`` instance; see the module docstring for the guarantees.

    :param client: an ``anthropic.Anthropic`` client built with ``max_retries=0``.
    :param system: the stable instructions (sent as one cached system block).
    :param user: the per-call request, data quoted inside a ``<data>`` block.
    :param output: the pydantic model the answer must validate against.
    :param check: extra validation of a parsed answer; a ``ValueError`` makes it off-contract.
    :raises ModelCallError: no valid answer within the policy; ``.usage`` holds what was spent.
    """
    import anthropic

    caller = _Caller(client, model, policy or CallPolicy(), budget, prices)
    schema = anthropic.transform_schema(output)
    messages: list[dict[str, Any]] = [{"role": "user", "content": user}]
    problem = ""
    for repairs in range(caller.policy.repair_attempts + 1):
        text = _answer_text(caller.send(_request(model, caller.policy, system, messages, schema)), caller)
        try:
            value = output.model_validate_json(text)
            if check is not None:
                check(value)
        except ValueError as err:  # pydantic's ValidationError is a ValueError too
            problem = _problems(err)
            log.warning("Claude (%s) answered off-contract (%s); asking again", model, problem[:300])
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": _repair(problem)}]
            continue
        return Answer(value, caller.usage, model, caller.attempts, repairs)
    repairs_made = caller.policy.repair_attempts
    raise caller.error("off_contract", f"no answer matched the contract after {repairs_made} repair(s): {problem}")


def _request(
    model: str, policy: CallPolicy, system: str, messages: list[dict[str, Any]], schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": policy.max_tokens,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": list(messages),
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }


def _answer_text(message: Any, caller: _Caller) -> str:
    """The answer's text, or a ModelCallError when the model stopped for any reason but ``end_turn``."""
    stop = getattr(message, "stop_reason", None)
    if stop == "refusal":
        details = getattr(message, "stop_details", None)
        explanation = str(getattr(details, "explanation", "") or "")[:200]
        raise caller.error("refusal", f"the model refused to answer{': ' + explanation if explanation else ''}")
    if stop in ("max_tokens", "model_context_window_exceeded"):
        raise caller.error("max_tokens", f"the answer was cut off ({stop}) at max_tokens={caller.policy.max_tokens}")
    if stop != "end_turn":
        raise caller.error("off_contract", f"the model stopped with stop_reason={stop!r} instead of end_turn")
    return "".join(block.text for block in message.content or [] if getattr(block, "type", None) == "text")


def _problems(err: ValueError) -> str:
    if isinstance(err, ValidationError):
        found = err.errors(include_input=False, include_url=False)[:_MAX_REPAIR_PROBLEMS]
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in found)
    return str(err)[:500]


def _repair(problem: str) -> str:
    return (
        f"Your previous answer did not match the required JSON schema: {problem}. "
        "Answer again with exactly one JSON object that matches the schema; nothing else."
    )


class _Caller:
    """Sends requests for one decision: shared deadline, attempt count, usage and budget."""

    def __init__(
        self, client: Any, model: str, policy: CallPolicy, budget: Budget | None, prices: PriceTable | None
    ) -> None:
        self.client, self.model, self.policy = client, model, policy
        self.budget, self.prices = budget, prices
        self.started = time.monotonic()
        self.usage = Usage()
        self.attempts = 0

    def remaining(self) -> float:
        return self.policy.deadline_s - (time.monotonic() - self.started)

    def error(self, reason: str, message: str) -> ModelCallError:
        return ModelCallError(reason, message, usage=self.usage)

    def send(self, request: dict[str, Any]) -> Any:
        """One request, retried on transient failures within the attempt and time bounds."""
        reason, last = "timeout", "no attempt made"
        for retries in range(self.policy.max_attempts):
            self._check_budget(request)
            timeout = min(self.policy.timeout_s, self.remaining())
            if timeout <= 0:
                raise self.error(reason, f"the {self.policy.deadline_s:.0f}s deadline passed; last: {last}")
            self.attempts += 1
            try:
                message = self.client.messages.create(**request, timeout=timeout)
            except Exception as err:
                reason, retryable = classify(err)
                last = describe(err)
                if not retryable:
                    raise self.error(reason, last) from err
                self._pause(err, reason, retries, last)
                continue
            self._charge(message)
            return message
        raise self.error(reason, f"gave up after {self.policy.max_attempts} attempt(s); last: {last}")

    def _check_budget(self, request: dict[str, Any]) -> None:
        if self.budget is None:
            return
        estimate = len(json.dumps(request, ensure_ascii=False)) // 4
        try:
            self.budget.check(self.model, estimate, self.prices)
        except BudgetExhausted as err:
            err.usage = self.usage
            raise

    def _charge(self, message: Any) -> None:
        usage = usage_of(getattr(message, "usage", None), self.model, self.prices)
        self.usage = self.usage + usage
        if self.budget is not None:
            self.budget.charge(usage)

    def _pause(self, err: Exception, reason: str, retries: int, last: str) -> None:
        """Sleep before the next attempt, or give up when the wait does not fit the deadline."""
        if retries + 1 >= self.policy.max_attempts:
            return
        hinted, left = retry_after(err), self.remaining()
        if hinted is not None and hinted > left:
            message = f"the server asked to retry after {hinted:.0f}s, beyond the {left:.0f}s left"
            raise self.error(reason, message) from err
        if hinted is not None:
            wait = min(hinted, self.policy.max_retry_after_s)
        else:
            jitter = 1 - 0.25 * random.random()  # noqa: S311 - jitter, not cryptography
            wait = min(self.policy.backoff_s * 2**retries, self.policy.max_backoff_s) * jitter
        if wait >= left:
            raise self.error(reason, f"no time left to retry ({left:.1f}s); last: {last}") from err
        log.warning("Claude (%s): %s; retrying in %.2fs", self.model, last, wait)
        time.sleep(wait)


def classify(err: Exception) -> tuple[str, bool]:
    """(reason, retryable) of an SDK exception; anything that is not the SDK's is re-raised."""
    import anthropic

    if isinstance(err, anthropic.APITimeoutError):
        return "timeout", True
    if isinstance(err, anthropic.APIConnectionError):
        return "unavailable", True
    if isinstance(err, anthropic.APIStatusError):
        return _status_reason(err.status_code, getattr(err, "error_code", None))
    if isinstance(err, anthropic.AnthropicError):
        return "unavailable", False
    if isinstance(err, TypeError) and "authentication" in str(err).lower():
        return "no_credentials", False
    raise err


def _status_reason(status: int, error_code: str | None) -> tuple[str, bool]:
    if status == 429:
        return "rate_limited", error_code != "enforced_spend_limit_reached"
    if status == 529:
        return "overloaded", True
    if status in (401, 402, 403):
        return "auth", False
    if status in (408, 504):
        return "timeout", True
    if status == 409 or status >= 500:
        return "unavailable", True
    return "bad_request", False


def describe(err: Exception) -> str:
    """A short, credential-free description of an SDK error."""
    status = getattr(err, "status_code", None)
    if status is None:
        return str(err)[:200] if isinstance(err, TypeError) else type(err).__name__  # the SDK's "no credentials"
    message = getattr(err, "api_message", None) or getattr(err, "message", "") or ""
    code = getattr(err, "error_code", None)
    return f"HTTP {status}{f' {code}' if code else ''}: {str(message)[:200]}"


def retry_after(err: Exception) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` or ``retry-after``), if it said."""
    headers: Mapping[str, str] = getattr(getattr(err, "response", None), "headers", None) or {}
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
