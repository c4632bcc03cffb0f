"""Spend budgets: worst cases, what a refused reservation means, the wrap-up note, budget input."""

from __future__ import annotations

import pytest

from swarm.domain import budget, pricing
from swarm.domain.budget import State, Verdict, Worst
from swarm.exceptions import InputError

K25 = pricing.BUILTIN["kimi-k2.5"]


def test_the_worst_case_bills_the_whole_prompt_as_misses_plus_max_output():
    worst = budget.worst_case(prompt_bytes=3000, max_output=100, price=K25)
    assert worst == Worst(pico=1000 * K25.input + 100 * K25.output, tokens=1100)
    assert budget.worst_case(3000, 100, None) == Worst(None, 1100)


def state(spent=0, reserved=0, cap=None, used=0, reserved_tokens=0, max_tokens=None):
    return State(spent, reserved, cap, used, reserved_tokens, max_tokens)


def test_a_call_blocked_only_by_calls_in_flight_waits():
    assert budget.refused(state(spent=60, reserved=30, cap=100), Worst(20, 5)) == Verdict.WAIT


def test_a_call_that_would_not_fit_even_alone_waits_for_calls_in_flight_then_exhausts():
    assert budget.refused(state(spent=90, reserved=5, cap=100), Worst(20, 5)) == Verdict.WAIT
    assert budget.refused(state(spent=90, reserved=0, cap=100), Worst(20, 5)) == Verdict.EXHAUSTED
    assert budget.refused(state(used=95, max_tokens=100), Worst(None, 10)) == Verdict.EXHAUSTED


def test_a_usd_cap_without_a_price_is_exhausted_at_once_with_a_clear_reason():
    s = state(spent=None, cap=100)
    assert budget.refused(s, Worst(None, 10)) == Verdict.EXHAUSTED
    assert "has no price" in budget.exhausted_reason(s, Worst(None, 10), "mystery")


def test_the_reason_starts_with_budget_and_says_how_to_continue():
    reason = budget.exhausted_reason(state(spent=90 * 10**10, cap=100 * 10**10), Worst(20 * 10**10, 5), "kimi-k2.5")
    assert reason.startswith("budget: the run spent $0.9000 of its $1.0000 cap")
    assert "swarm resume RUN_ID --max-usd" in reason


@pytest.mark.parametrize(
    ("spent", "cap", "used", "max_tokens", "noted"),
    [(89, 100, 0, None, False), (90, 100, 0, None, True), (0, None, 95, 100, True), (None, 100, 0, None, False)],
)
def test_the_model_is_told_to_wrap_up_at_90_percent(spent, cap, used, max_tokens, noted):
    note = budget.wrap_up_note(spent, cap, used, max_tokens, (1, 1))
    assert (note is not None) == noted
    if note:
        assert "Wrap up" in note


@pytest.mark.parametrize("value", ["-1", "0", "abc", "", "nan", "inf", True, -0.5, 0])
def test_bad_usd_budgets_are_refused(value):
    with pytest.raises(InputError, match="max_usd must be a number of USD > 0"):
        budget.parse_usd(value)


@pytest.mark.parametrize("value", ["-1", "0", "abc", "1.5", True, 0])
def test_bad_token_budgets_are_refused(value):
    with pytest.raises(InputError, match="max_tokens must be a whole number of tokens > 0"):
        budget.parse_tokens(value)


def test_good_budgets_are_exact():
    assert budget.parse_usd("0.25") == 25 * 10**10
    assert budget.parse_usd(1.5) == 15 * 10**11
    assert budget.parse_tokens("200000") == 200_000


def test_the_model_is_told_to_wrap_up_earlier_when_fewer_than_two_worst_case_calls_are_left():
    assert budget.wrap_up_note(50, 100, 0, None, (20, 0)) is None
    assert budget.wrap_up_note(61, 100, 0, None, (20, 0)) is not None
    assert budget.wrap_up_note(0, None, 700, 1000, (0, 200)) is not None


def test_a_tenant_reservation_waits_only_if_the_call_could_fit_the_day_alone():
    from swarm.domain.budget import Verdict, tenant_exhausted_reason, tenant_refused, utc_day

    assert tenant_refused(spent_pico=60, cap_pico=100, worst_pico=30) == Verdict.WAIT
    assert tenant_refused(spent_pico=80, cap_pico=100, worst_pico=30) == Verdict.EXHAUSTED
    assert utc_day(0.0) == "1970-01-01" and utc_day(86399.0) == "1970-01-01" and utc_day(86400.0) == "1970-01-02"
    reason = tenant_exhausted_reason("acme", "2026-12-02", 80 * 10**10, 10**12, 3 * 10**11)
    assert reason.startswith("budget: tenant 'acme' spent $0.8000 of its $1.0000 daily cap")
