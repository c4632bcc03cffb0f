"""Spend budgets per run (USD and tokens): pure decisions over the run row's counters.

Before a model call a worker **reserves** the call's worst case — the prompt it is about to send,
counted generously (:data:`BYTES_PER_TOKEN`), billed as cache misses, plus the call's
``max_tokens`` of output — with one conditional UPDATE of the run row that succeeds only while
``spent + reserved + worst <= cap``. The commit of the call **settles** it: the reservation comes
off, the real usage goes on, in the statement that already counts the turn. So the recorded spend
never passes a cap; what a provider bills beyond it is bounded by the reservations in flight
(calls whose answers were lost: a worker died after the provider answered).

A reservation that does not fit because of other calls in flight **waits** for them to settle; one
that would not fit even alone, with nothing in flight, means the budget is **exhausted**: the run
ends ``failed`` with a ``budget:`` reason, and ``swarm resume --max-usd`` continues it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from swarm.domain import pricing, prompts
from swarm.exceptions import InputError

#: A prompt's tokens are estimated as its UTF-8 bytes over this: generous for English (~4 bytes a
#: token) and for CJK text (3 bytes a character, about a token each).
BYTES_PER_TOKEN = 3
#: At this fraction of a cap the model is told to wrap up (a note on its tool results) ...
WRAP_UP_FRACTION = 0.9
#: ... or earlier, once less than this many worst-case calls are left: where calls' worst cases
#: are large against the cap, reservations stop the run before 90 % is ever spent.
WRAP_UP_CALLS = 2
#: Largest budget accepted: USD, tokens.
MAX_USD = 1_000_000.0
MAX_TOKENS = 10**15


@dataclass(frozen=True)
class Worst:
    """A model call's worst case: picodollars (None: the model has no price) and tokens."""

    pico: int | None
    tokens: int


#: What one image part is counted as, in tokens: generous (Kimi and OpenAI bill a 1024x1024 image
#: at about 1-1.5 thousand tokens), and far below its base64 bytes over BYTES_PER_TOKEN.
IMAGE_TOKENS = 4096


def prompt_bytes(messages: list[dict[str, Any]], schemas: list[dict[str, Any]]) -> int:
    """The size of a request for :func:`worst_case`: its JSON bytes, but each image part counted
    as IMAGE_TOKENS rather than by its base64 (a 1 MB image is not 470 thousand tokens)."""
    images = 0
    counted: list[dict[str, Any]] = []
    for m in messages:
        content = m.get("content")
        parts: list[dict[str, Any]] = content if isinstance(content, list) else []
        n = sum(1 for p in parts if p.get("type") == "image_url")
        images += n
        counted.append({**m, "content": [p for p in parts if p.get("type") != "image_url"]} if n else m)
    size = len(json.dumps([counted, schemas], ensure_ascii=False).encode())
    return size + images * IMAGE_TOKENS * BYTES_PER_TOKEN


def worst_case(prompt_bytes: int, max_output: int, price: pricing.Price | None) -> Worst:
    """The most a call sending ``prompt_bytes`` of request and answering at most ``max_output``
    tokens can cost."""
    tokens_in = math.ceil(prompt_bytes / BYTES_PER_TOKEN)
    if price is None:
        return Worst(None, tokens_in + max_output)
    pico = tokens_in * max(price.input, price.input_cached) + max_output * price.output
    return Worst(pico, tokens_in + max_output)


@dataclass(frozen=True)
class State:
    """A run's budget counters as the run row holds them (caps None: no cap)."""

    spent_pico: int | None
    reserved_pico: int
    max_pico: int | None
    used_tokens: int
    reserved_tokens: int
    max_tokens: int | None


class Verdict(StrEnum):
    WAIT = "wait"  #: other calls in flight hold the rest of the budget: try again when they settle
    EXHAUSTED = "exhausted"  #: not even alone would the call fit: the run ends (reason ``budget``)


def refused(state: State, worst: Worst) -> Verdict:
    """What a reservation that did not fit means (the UPDATE matched no row)."""
    if state.max_pico is not None and (state.spent_pico is None or worst.pico is None):
        return Verdict.EXHAUSTED  # a USD cap cannot be kept without prices
    alone_fits = (state.max_pico is None or (state.spent_pico or 0) + (worst.pico or 0) <= state.max_pico) and (
        state.max_tokens is None or state.used_tokens + worst.tokens <= state.max_tokens
    )
    in_flight = state.reserved_pico > 0 or state.reserved_tokens > 0
    return Verdict.WAIT if alone_fits or in_flight else Verdict.EXHAUSTED


def exhausted_reason(state: State, worst: Worst, model: str) -> str:
    """Why the run ended: the clear message users see (``reason`` of the run)."""
    if state.max_pico is not None and (state.spent_pico is None or worst.pico is None):
        return prompts.BUDGET_NO_PRICE.format(model=model)
    if state.max_pico is not None and (state.spent_pico or 0) + (worst.pico or 0) > state.max_pico:
        return prompts.BUDGET_EXHAUSTED.format(
            spent=_usd(state.spent_pico or 0), cap=_usd(state.max_pico), what="--max-usd", worst=_usd(worst.pico or 0)
        )
    return prompts.BUDGET_EXHAUSTED.format(
        spent=f"{state.used_tokens} tokens",
        cap=f"{state.max_tokens} tokens",
        what="--max-tokens",
        worst=f"{worst.tokens} tokens",
    )


def wrap_up_note(
    spent_pico: int | None,
    max_pico: int | None,
    used_tokens: int,
    max_tokens: int | None,
    call: tuple[int, int] = (0, 0),
) -> str | None:
    """The note on a turn's tool results once 90 % of a budget is spent, or less than
    :data:`WRAP_UP_CALLS` times ``call`` (the worst case reserved for the turn's own call:
    picodollars, tokens) is left; else None."""
    shares, low = [], False
    if max_pico and spent_pico is not None:
        shares.append(spent_pico / max_pico)
        low = max_pico - spent_pico < WRAP_UP_CALLS * call[0]
    if max_tokens:
        shares.append(used_tokens / max_tokens)
        low = low or max_tokens - used_tokens < WRAP_UP_CALLS * call[1]
    share = max(shares, default=0.0)
    if share < WRAP_UP_FRACTION and not low:
        return None
    return prompts.BUDGET_WRAP_UP.format(percent=min(100, int(share * 100)))


def parse_usd(value: object, name: str = "max_usd") -> int:
    """A USD budget as given by a user (CLI text, JSON number) → picodollars; InputError unless it
    is a finite number > 0."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number of USD > 0, got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InputError(f"{name} must be a number of USD > 0, got {value!r}") from None
    if not amount.is_finite() or amount <= 0 or amount > Decimal(str(MAX_USD)):
        raise InputError(f"{name} must be a number of USD > 0 (and at most {MAX_USD:,.0f}), got {value!r}")
    return int(amount * pricing.PICO)


def parse_tokens(value: object, name: str = "max_tokens") -> int:
    """A token budget as given by a user → int; InputError unless it is a whole number > 0."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) <= MAX_TOKENS:
        raise InputError(f"{name} must be a whole number of tokens > 0, got {value!r}")
    return int(text)


def _usd(pico: int) -> str:
    return f"${pico / pricing.PICO:,.4f}"


# --------------------------------------------------------------- a tenant's daily cap


def utc_day(now: float) -> str:
    """The UTC day a tenant's spend counts on (``YYYY-MM-DD``)."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def tenant_refused(spent_pico: int, cap_pico: int, worst_pico: int) -> Verdict:
    """What a tenant reservation that did not fit means: wait for the tenant's calls in flight to
    settle if the call would fit alone, else the day's cap is spent."""
    return Verdict.WAIT if spent_pico + worst_pico <= cap_pico else Verdict.EXHAUSTED


def tenant_exhausted_reason(tenant: str, day: str, spent_pico: int, cap_pico: int, worst_pico: int) -> str:
    return prompts.TENANT_BUDGET_EXHAUSTED.format(
        tenant=tenant, day=day, spent=_usd(spent_pico), cap=_usd(cap_pico), worst=_usd(worst_pico)
    )
