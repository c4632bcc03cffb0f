"""The process-wide AIMD concurrency limiter."""

from __future__ import annotations

import threading
import time

import pytest

from swarm.llm.limiter import AdaptiveLimiter, shared_limiter


def test_starts_at_max() -> None:
    limiter = AdaptiveLimiter(16)
    assert limiter.limit == 16
    assert limiter.in_flight == 0


def test_halves_on_rate_limit_down_to_min() -> None:
    limiter = AdaptiveLimiter(16)
    seen = []
    for _ in range(6):
        limiter.on_rate_limited()
        seen.append(limiter.limit)
    assert seen == [8, 4, 2, 1, 1, 1]


def test_respects_custom_min() -> None:
    limiter = AdaptiveLimiter(16, min_concurrency=3)
    for _ in range(10):
        limiter.on_rate_limited()
    assert limiter.limit == 3


def test_grows_back_additively_to_max_and_no_further() -> None:
    limiter = AdaptiveLimiter(8)
    limiter.on_rate_limited()
    limiter.on_rate_limited()
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 3
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 8


def test_custom_increase() -> None:
    limiter = AdaptiveLimiter(8, increase=0.5)
    limiter.on_rate_limited()  # 4
    limiter.on_success()
    assert limiter.limit == 4
    limiter.on_success()
    assert limiter.limit == 5


@pytest.mark.parametrize(("mx", "mn"), [(0, 1), (4, 0), (2, 3)])
def test_rejects_bad_bounds(mx: int, mn: int) -> None:
    with pytest.raises(ValueError, match="min_concurrency"):
        AdaptiveLimiter(mx, mn)


def test_rejects_non_positive_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        AdaptiveLimiter(4, increase=0)


def test_slot_counts_in_flight_and_releases_on_error() -> None:
    limiter = AdaptiveLimiter(4)
    with limiter.slot():
        assert limiter.in_flight == 1
    with pytest.raises(RuntimeError), limiter.slot():
        raise RuntimeError("boom")
    assert limiter.in_flight == 0


def test_slot_blocks_at_limit_until_released() -> None:
    limiter = AdaptiveLimiter(1)
    entered = threading.Event()
    with limiter.slot():
        t = threading.Thread(target=lambda: _enter(limiter, entered))
        t.start()
        assert not entered.wait(0.1)
    assert entered.wait(2)
    t.join(2)


def _enter(limiter: AdaptiveLimiter, entered: threading.Event) -> None:
    with limiter.slot():
        entered.set()


def test_lowered_limit_blocks_new_calls_until_in_flight_drains() -> None:
    limiter = AdaptiveLimiter(4)
    release = threading.Event()
    holders_in = threading.Barrier(5)

    def hold() -> None:
        with limiter.slot():
            holders_in.wait(2)
            release.wait(2)

    holders = [threading.Thread(target=hold) for _ in range(4)]
    for h in holders:
        h.start()
    holders_in.wait(2)
    limiter.on_rate_limited()
    assert limiter.limit == 2
    entered = threading.Event()
    t = threading.Thread(target=lambda: _enter(limiter, entered))
    t.start()
    assert not entered.wait(0.1)  # 4 in flight > limit 2
    release.set()
    assert entered.wait(2)
    for th in [*holders, t]:
        th.join(2)


def test_burst_of_rate_limits_from_one_window_halves_once() -> None:
    limiter = AdaptiveLimiter(16)
    n = 8
    all_in = threading.Barrier(n)
    done = threading.Barrier(n)

    def call() -> None:
        with limiter.slot():
            all_in.wait(2)  # every call started before any 429 arrived
            limiter.on_rate_limited()
            done.wait(2)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2)
    assert limiter.limit == 8


def test_rate_limit_from_call_started_after_cut_cuts_again() -> None:
    limiter = AdaptiveLimiter(16)
    with limiter.slot():
        limiter.on_rate_limited()
    with limiter.slot():
        limiter.on_rate_limited()
    assert limiter.limit == 4


def test_never_exceeds_limit_under_contention() -> None:
    limiter = AdaptiveLimiter(4)
    lock = threading.Lock()
    current = 0
    peak = 0

    def work() -> None:
        nonlocal current, peak
        for _ in range(20):
            with limiter.slot():
                with lock:
                    current += 1
                    peak = max(peak, current)
                time.sleep(0.0005)
                with lock:
                    current -= 1
                limiter.on_success()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert 1 <= peak <= 4
    assert limiter.in_flight == 0


def test_shared_limiter_is_one_per_process_and_size() -> None:
    assert shared_limiter(7) is shared_limiter(7)
    assert shared_limiter(7) is not shared_limiter(9)
    assert shared_limiter(7).max_concurrency == 7


def test_repr() -> None:
    assert repr(AdaptiveLimiter(4)) == "AdaptiveLimiter(limit=4, in_flight=0, min=1, max=4)"
