"""The pure retry policy: Retry-After parsing, backoff with jitter, what is retryable."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from swarm.exceptions import (
    LLMAuthError,
    LLMBadRequest,
    LLMConnectionError,
    LLMError,
    LLMQuotaExceeded,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)
from swarm.llm.retry import RETRY_AFTER_CAP, backoff_delay, parse_retry_after, should_retry

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, tz=UTC), usegmt=True)


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("  7 ", 7.0),
        ("-5", 0.0),
        ("-0.1", 0.0),
    ],
)
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "12s", "nan", "inf", "-inf", "Wed, 99 Oct 2015 07:28:00 GMT"]
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_parse_retry_after_http_date_in_future() -> None:
    assert parse_retry_after(http_date(30), NOW) == pytest.approx(30.0)


def test_parse_retry_after_http_date_in_past_is_zero() -> None:
    assert parse_retry_after(http_date(-3600), NOW) == 0.0


def test_parse_retry_after_rfc_example_date() -> None:
    # The example from RFC 9110, seen from 10 s before it.
    when = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", when - 10) == pytest.approx(10.0)


def test_parse_retry_after_date_with_unknown_zone_is_utc() -> None:
    value = http_date(45).replace("GMT", "-0000")
    assert parse_retry_after(value, NOW) == pytest.approx(45.0)


# --- backoff_delay ------------------------------------------------------------------------


def test_backoff_grows_exponentially_under_full_jitter() -> None:
    top = [backoff_delay(n, retry_after=None, rand=0.999999) for n in range(5)]
    assert top == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0], rel=1e-5)


def test_backoff_full_jitter_can_be_zero() -> None:
    assert backoff_delay(4, retry_after=None, rand=0.0) == 0.0


def test_backoff_jitter_scales_linearly() -> None:
    assert backoff_delay(3, retry_after=None, rand=0.25) == pytest.approx(0.25 * 4.0)


def test_backoff_capped() -> None:
    assert backoff_delay(20, retry_after=None, rand=0.999999, cap=30.0) <= 30.0
    assert backoff_delay(6, retry_after=None, rand=0.5, base=1.0, cap=10.0) == pytest.approx(5.0)


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10_000, retry_after=None, rand=0.5) == pytest.approx(15.0)


def test_backoff_negative_attempt_treated_as_first() -> None:
    assert backoff_delay(-3, retry_after=None, rand=0.999999) == pytest.approx(0.5, rel=1e-5)


def test_backoff_out_of_range_rand_is_clamped() -> None:
    assert backoff_delay(0, retry_after=None, rand=-1.0) == 0.0
    assert backoff_delay(0, retry_after=None, rand=5.0) == pytest.approx(0.5)


@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999])
@pytest.mark.parametrize("attempt", [0, 3, 10])
def test_backoff_never_below_retry_after(rand: float, attempt: int) -> None:
    delay = backoff_delay(attempt, retry_after=7.0, rand=rand)
    assert 7.0 <= delay < 7.0 + 0.5


def test_backoff_retry_after_honoured_even_above_exponential_cap() -> None:
    assert backoff_delay(0, retry_after=90.0, rand=0.0, cap=30.0) == 90.0


def test_backoff_retry_after_is_capped() -> None:
    assert backoff_delay(0, retry_after=86_400.0, rand=0.0) == RETRY_AFTER_CAP
    assert backoff_delay(0, retry_after=86_400.0, rand=0.999) < RETRY_AFTER_CAP + 0.5


def test_backoff_retry_after_zero_still_jitters_a_little() -> None:
    assert backoff_delay(5, retry_after=0.0, rand=0.5) == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_backoff_ignores_non_finite_retry_after(bad: float) -> None:
    assert backoff_delay(1, retry_after=bad, rand=0.5) == pytest.approx(0.5)


def test_backoff_negative_retry_after_is_zero() -> None:
    assert backoff_delay(0, retry_after=-10.0, rand=0.0) == 0.0


# --- should_retry -------------------------------------------------------------------------

RETRYABLE = [LLMTimeout(), LLMConnectionError(), LLMRateLimited(), LLMServerError()]
FATAL = [LLMAuthError(), LLMQuotaExceeded(), LLMBadRequest(), LLMError()]


@pytest.mark.parametrize("exc", RETRYABLE, ids=lambda e: type(e).__name__)
def test_retryable_errors_retried_within_budget(exc: LLMError) -> None:
    assert should_retry(exc, 0, 3)
    assert should_retry(exc, 2, 3)
    assert not should_retry(exc, 3, 3)
    assert not should_retry(exc, 4, 3)


@pytest.mark.parametrize("exc", FATAL, ids=lambda e: type(e).__name__)
def test_fatal_errors_never_retried(exc: LLMError) -> None:
    assert not should_retry(exc, 0, 100)


def test_zero_retries_means_no_retry() -> None:
    assert not should_retry(LLMServerError(), 0, 0)
