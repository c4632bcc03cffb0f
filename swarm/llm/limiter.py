"""A process-wide AIMD concurrency limit for model calls: the in-process :class:`~swarm.llm.capacity.Capacity`.

When the provider rate-limits one call, every thread of the process should slow down, not
just the one that got the 429: otherwise a hundred parallel agents keep the endpoint saturated
and each of them retries into the same wall. A ``Retry-After`` holds every thread back until
then; with requests or tokens per minute configured, a call also waits for room in the last
minute's window (tokens: an estimate reserved first, settled with the reported usage after).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from swarm.llm.capacity import CapacityView

#: The window of the per-minute limits.
WINDOW = 60.0
#: Longest a coroutine waiting for capacity sleeps before it looks again by itself.
ASYNC_RECHECK = 1.0


@dataclass(frozen=True)
class Ticket:
    """One call's slot: the cut generation it started in, and its entry in the minute's window."""

    generation: int
    entry: list[float]


def _resolve(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class AdaptiveLimiter:
    """Thread-safe concurrency limiter: additive increase on success, halve on rate limit.

    ``increase``: slots added per success; None: 1/limit, one slot per round of successes
    (the provider limits' setting, see :func:`swarm.domain.capacity.grow`). ``hold``: a
    Retry-After holds every call of the process back (the provider limits' setting; without
    it only the thread that got the 429 waits).

    A rate limit seen by a call that started before the last cut does not cut again, so a
    burst of 429s from one overload halves the limit once, not down to the floor.
    """

    def __init__(
        self,
        max_concurrency: int,
        min_concurrency: int = 1,
        *,
        increase: float | None = 1.0,
        rpm: int | None = None,
        tpm: int | None = None,
        label: str = "",
        hold: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_concurrency < 1 or max_concurrency < min_concurrency:
            raise ValueError(
                f"need 1 <= min_concurrency <= max_concurrency, got min={min_concurrency}, max={max_concurrency}"
            )
        if increase is not None and increase <= 0:
            raise ValueError(f"increase must be positive, got {increase}")
        self.max_concurrency = max_concurrency
        self.min_concurrency = min_concurrency
        self._increase = increase
        self._limit = float(max_concurrency)
        self._in_flight = 0
        self._generation = 0  # bumped on every cut
        self._cond = threading.Condition()
        self._local = threading.local()
        self.rpm, self.tpm, self.label, self.hold = rpm, tpm, label, hold
        self._clock = clock
        self._not_before = 0.0
        self._waiting = 0
        self._calls = 0
        self._throttled = 0
        #: One [start, tokens] per call of the last minute; a call's entry is settled in place.
        self._window: deque[list[float]] = deque()
        self._tokens = 0.0
        #: Coroutines waiting in :meth:`acquire`, each with the loop that runs it.
        self._sleepers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def limit(self) -> int:
        """How many calls may run at once right now."""
        with self._cond:
            return int(self._limit)

    @property
    def in_flight(self) -> int:
        """How many calls hold a slot right now."""
        with self._cond:
            return self._in_flight

    @contextmanager
    def slot(self, tokens: int = 0) -> Iterator[None]:
        """Block until a call expected to use ``tokens`` may start, and hold the slot for the body
        of the ``with``."""
        with self._cond:
            self._waiting += 1
            try:
                while (wait := self._blocked_for(self._clock(), tokens)) > 0:
                    self._cond.wait(None if math.isinf(wait) else wait)
            finally:
                self._waiting -= 1
            ticket = self._take(tokens)
        outer = getattr(self._local, "ticket", None)
        self._local.ticket = ticket
        try:
            yield
        finally:
            self._local.ticket = outer
            self.release(ticket)

    async def acquire(self, tokens: int = 0) -> Ticket:
        """Wait, as a coroutine, until a call expected to use ``tokens`` may start: a call waiting
        for capacity holds no thread. Give the ticket back with :meth:`release`."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                wait = self._blocked_for(self._clock(), tokens)
                if wait <= 0:
                    return self._take(tokens)
                self._waiting += 1
                woken: asyncio.Future[None] = loop.create_future()
                self._sleepers.append((loop, woken))
            try:
                # Bounded: a wake-up lost to a race costs at most this, never a hang.
                await asyncio.wait_for(woken, min(wait, ASYNC_RECHECK))
            except TimeoutError:
                pass
            finally:
                with self._cond:
                    self._waiting -= 1
                    with contextlib.suppress(ValueError):
                        self._sleepers.remove((loop, woken))

    def _take(self, tokens: int) -> Ticket:
        self._in_flight += 1
        self._calls += 1
        entry = [self._clock(), float(tokens)]
        if self.rpm is not None or self.tpm is not None:
            self._window.append(entry)
            self._tokens += tokens
        return Ticket(self._generation, entry)

    def release(self, ticket: Ticket) -> None:
        """The call of ``ticket`` is over: its slot goes to the next waiter."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()
            self._wake(everyone=False)

    def _wake(self, *, everyone: bool) -> None:
        """Wake coroutines waiting in :meth:`acquire` (on their own loops); called under the lock."""
        while self._sleepers:
            loop, woken = self._sleepers.pop(0)
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
                loop.call_soon_threadsafe(_resolve, woken)
            if not everyone:
                return

    def _blocked_for(self, now: float, tokens: int) -> float:
        """Seconds until a call may start (inf: until a slot is released), 0 if it may now."""
        if now < self._not_before:
            return self._not_before - now
        if self._in_flight >= int(self._limit):
            return math.inf
        while self._window and self._window[0][0] <= now - WINDOW:
            self._tokens -= self._window.popleft()[1]
        if self._window:
            until_oldest_leaves = self._window[0][0] + WINDOW - now
            if self.rpm is not None and len(self._window) >= self.rpm:
                return until_oldest_leaves
            # A call larger than the whole budget still runs alone, or it would wait forever.
            if self.tpm is not None and self._tokens + tokens > self.tpm:
                return until_oldest_leaves
        return 0.0

    def on_success(self, tokens: int | None = None, ticket: Ticket | None = None) -> None:
        """A call succeeded (having used ``tokens``, settled against its estimate): allow a
        little more concurrency, up to the maximum. ``ticket``: the call's, if not this thread's slot."""
        ticket = ticket or getattr(self._local, "ticket", None)
        entry = ticket.entry if ticket is not None else None
        with self._cond:
            live = entry is not None and entry[0] > self._clock() - WINDOW  # still counted in the window
            if tokens is not None and entry is not None and live and (self.tpm is not None or self.rpm is not None):
                self._tokens += tokens - entry[1]
                entry[1] = float(tokens)
            if self._limit < self.max_concurrency:
                step = self._increase if self._increase is not None else 1.0 / self._limit
                self._limit = min(float(self.max_concurrency), self._limit + step)
                self._cond.notify_all()
                self._wake(everyone=True)

    def on_rate_limited(self, retry_after: float | None = None, ticket: Ticket | None = None) -> None:
        """The provider said slow down: nobody starts a call before ``retry_after`` seconds from
        now, and the limit is halved, not below the minimum."""
        ticket = ticket or getattr(self._local, "ticket", None)
        started = ticket.generation if ticket is not None else None
        with self._cond:
            self._throttled += 1
            if retry_after and self.hold:
                self._not_before = max(self._not_before, self._clock() + retry_after)
            if started is not None and started < self._generation:
                return  # this call was already in flight when we last cut; already counted
            self._limit = max(float(self.min_concurrency), self._limit / 2.0)
            self._generation += 1

    def snapshot(self) -> CapacityView:
        with self._cond:
            return CapacityView(
                label=self.label,
                shared=False,
                max_concurrency=self.max_concurrency,
                limit=self._limit,
                in_flight=self._in_flight,
                waiting=self._waiting,
                calls=self._calls,
                throttled=self._throttled,
                rpm=self.rpm,
                tpm=self.tpm,
            )

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(limit={self.limit}, in_flight={self.in_flight}, "
            f"min={self.min_concurrency}, max={self.max_concurrency})"
        )


_shared: dict[int, AdaptiveLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(max_concurrency: int) -> AdaptiveLimiter:
    """The process-wide limiter for ``max_concurrency``, so every client in a process backs
    off together even when each worker thread builds its own :class:`LLMClient`."""
    with _shared_lock:
        limiter = _shared.get(max_concurrency)
        if limiter is None:
            limiter = _shared[max_concurrency] = AdaptiveLimiter(max_concurrency)
        return limiter


def _forget_after_fork() -> None:
    # A forked child inherits the locks in whatever state other threads left them.
    global _shared_lock  # noqa: PLW0603
    _shared_lock = threading.Lock()
    _shared.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
