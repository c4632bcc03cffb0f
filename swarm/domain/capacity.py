"""A model provider's capacity: who the provider is, its limits, and how they adapt. Pure.

A provider is an account on an endpoint: (base URL, API key, model). Its limits — concurrent
requests, requests per minute, tokens per minute — belong to the account, so every worker of a
cluster shares one budget (swarm/llm/capacity*.py keeps it, in-process or in Redis). The
concurrency actually allowed adapts AIMD-style: halved when the provider answers 429, grown by
one slot per "round" of successful calls, never above the configured limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from swarm.constants import PROVIDER_TIERS

TIERS = PROVIDER_TIERS

#: The floor of the adaptive concurrency: one call always may run.
MIN_CONCURRENCY = 1.0


@dataclass(frozen=True)
class ProviderLimits:
    """None: no limit of that kind (the provider's own answers still apply)."""

    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.concurrency, self.rpm, self.tpm))


def resolve_limits(
    tier: str = "", concurrency: int | None = None, rpm: int | None = None, tpm: int | None = None
) -> ProviderLimits:
    """The limits of a tier preset, each overridden by an explicit value. Raises ValueError for an
    unknown tier or a value below 1, saying what is accepted."""
    base: tuple[int | None, int | None, int | None] = (None, None, None)
    if tier:
        if tier not in TIERS:
            raise ValueError(f"unknown provider tier {tier!r}; use one of {', '.join(TIERS)} or leave it empty")
        base = TIERS[tier]
    values = [
        given if given is not None else preset for given, preset in zip((concurrency, rpm, tpm), base, strict=True)
    ]
    for name, value in zip(("concurrency", "rpm", "tpm"), values, strict=True):
        if value is not None and value < 1:
            raise ValueError(f"provider {name} must be at least 1 (or unset for no limit), got {value}")
    return ProviderLimits(*values)


def check_run_limits(account: ProviderLimits, run: ProviderLimits, provider: str) -> None:
    """A run may lower its provider's limits, never raise them: a run cannot grant itself more
    than the account allows. ValueError naming the limit that is too high, or below 1."""
    for name in ("concurrency", "rpm", "tpm"):
        mine, most = getattr(run, name), getattr(account, name)
        if mine is not None and mine < 1:
            raise ValueError(f"the run's provider {name} must be at least 1, got {mine}")
        if mine is not None and most is not None and mine > most:
            raise ValueError(
                f"the run's provider {name} {mine} is above the {most} of provider {provider!r}: "
                "a run can only lower its provider's limits"
            )


def run_limits(account: ProviderLimits, run: ProviderLimits) -> ProviderLimits:
    """What a run's own limiter enforces on top of the account's: only the limits the run set
    lower than the account's (a worker configured with lower account limits wins)."""

    def lower(mine: int | None, most: int | None) -> int | None:
        return mine if mine is not None and (most is None or mine < most) else None

    return ProviderLimits(
        lower(run.concurrency, account.concurrency), lower(run.rpm, account.rpm), lower(run.tpm, account.tpm)
    )


def provider_id(base_url: str, api_key: str, model: str) -> str:
    """A stable, secret-free name of the account: the key enters only as a digest."""
    key = hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "nokey"
    return f"{base_url.rstrip('/')}|{key}|{model}"


def provider_label(pid: str) -> str:
    """A short label for metrics and the watch view: host/model#key-digest."""
    url, key, model = [*pid.split("|"), "", ""][:3]
    host = urlsplit(url).netloc or url
    return f"{host}/{model}#{key[:6]}"


# ------------------------------------------------------------------ AIMD and windows


def cut(limit: float) -> float:
    """The concurrency after a 429: halved, never below :data:`MIN_CONCURRENCY`."""
    return max(MIN_CONCURRENCY, limit / 2.0)


def grow(limit: float, ceiling: int) -> float:
    """The concurrency after one successful call: +1/limit, so a whole limit's worth of
    successes (one round trip of every slot) adds one slot; never above ``ceiling``."""
    return min(float(ceiling), limit + 1.0 / max(limit, MIN_CONCURRENCY))


def window_count(previous: float, current: float, elapsed: float, window: float) -> float:
    """Sliding-window estimate from two fixed windows: the previous window weighted by the part of
    it still inside the sliding window, plus the current one (``elapsed`` seconds into it)."""
    share = max(0.0, 1.0 - elapsed / window)
    return previous * share + current


def estimate_tokens(prompt_chars: int, max_tokens: int | None) -> int:
    """Tokens a call is expected to use, reserved before it: its prompt (~4 characters a token)
    plus its output bound, if any; settled against the reported usage after the call."""
    return prompt_chars // 4 + (max_tokens or 0)
