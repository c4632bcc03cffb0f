"""When and how long to wait before retrying a model call. Pure functions: no I/O, no clock,
no randomness of their own, so every branch is testable."""

from __future__ import annotations

import math
from datetime import UTC
from email.utils import parsedate_to_datetime

from swarm.exceptions import LLMError, LLMRetryableError

#: A server may ask for a long pause (a daily limit, a misconfigured proxy); waiting longer
#: than this inside one step only hides the problem, so we retry sooner and let the retry
#: budget decide.
RETRY_AFTER_CAP = 120.0

# 2**62 * base still fits a float comfortably; larger attempts are capped anyway.
_MAX_EXPONENT = 62


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``now`` is the current Unix time, used for dates. Negative or past values give 0;
    a missing or unparseable header gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_date(text, now)
    if seconds is None:
        return None
    # float() accepts "nan" and "inf"; neither is a usable delay.
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # A naive result means the zone was "-0000": still UTC, just "unknown local zone".
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None,
    base: float = 0.5,
    cap: float = 30.0,
    rand: float,
) -> float:
    """Seconds to sleep before retry number ``attempt`` (0 for the first retry).

    Without a server hint: exponential backoff with full jitter, ``rand * min(cap, base * 2**n)``.
    With ``retry_after``: never earlier than the server asked (capped at
    :data:`RETRY_AFTER_CAP`), plus up to ``base`` seconds of jitter so that many agents told
    the same Retry-After do not all return in the same instant. ``rand`` is in ``[0, 1)``.
    """
    jitter = min(max(rand, 0.0), 1.0)
    if retry_after is not None and math.isfinite(retry_after):
        floor = min(max(retry_after, 0.0), RETRY_AFTER_CAP)
        return floor + jitter * base
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    return jitter * min(cap, base * 2.0**exponent)


def should_retry(exc: LLMError, attempt: int, max_retries: int) -> bool:
    """True if ``exc`` is worth retrying and retry number ``attempt`` (0-based) is in budget."""
    return isinstance(exc, LLMRetryableError) and attempt < max_retries
