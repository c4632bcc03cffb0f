"""Waiting for provider capacity is an awaiting coroutine: it holds no thread (issue 11, part 4)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from swarm.llm.limiter import AdaptiveLimiter


def test_a_hundred_calls_waiting_for_capacity_hold_no_thread() -> None:
    limiter = AdaptiveLimiter(1)

    async def main() -> list[int]:
        first = await limiter.acquire()
        order: list[int] = []

        async def call(i: int) -> None:
            ticket = await limiter.acquire()
            order.append(i)
            await asyncio.sleep(0)
            limiter.release(ticket)

        before = threading.active_count()
        tasks = [asyncio.create_task(call(i)) for i in range(100)]
        await asyncio.sleep(0.05)
        assert limiter.snapshot().waiting == 100
        assert limiter.in_flight == 1
        assert threading.active_count() == before  # no thread per waiting call
        limiter.release(first)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        return order

    started = time.monotonic()
    order = asyncio.run(main())
    assert sorted(order) == list(range(100))
    assert limiter.in_flight == 0 and limiter.snapshot().waiting == 0
    assert time.monotonic() - started < 3  # woken by releases, not by the periodic recheck


def test_a_slot_released_by_a_thread_wakes_a_coroutine_waiting_on_a_loop() -> None:
    limiter = AdaptiveLimiter(1)
    with limiter.slot():

        async def wait() -> float:
            started = time.monotonic()
            ticket = await limiter.acquire()
            limiter.release(ticket)
            return time.monotonic() - started

        result: list[float] = []
        t = threading.Thread(target=lambda: result.append(asyncio.run(wait())))
        t.start()
        time.sleep(0.1)
        assert limiter.snapshot().waiting == 1
    t.join(5)
    assert result and result[0] < 0.5


@pytest.mark.parametrize("retry_after", [0.3])
def test_a_retry_after_holds_back_waiting_coroutines(retry_after: float) -> None:
    limiter = AdaptiveLimiter(4, hold=True)

    async def main() -> float:
        ticket = await limiter.acquire()
        limiter.on_rate_limited(retry_after, ticket=ticket)
        limiter.release(ticket)
        started = time.monotonic()
        limiter.release(await limiter.acquire())
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert waited >= retry_after - 0.05
    assert limiter.limit == 2  # halved once
