"""A process-wide AIMD concurrency limit for model calls.

When the provider rate-limits one call, every thread of the process should slow down, not
just the one that got the 429: otherwise a hundred parallel agents keep the endpoint saturated
and each of them retries into the same wall.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class AdaptiveLimiter:
    """Thread-safe concurrency limiter: additive increase on success, halve on rate limit.

    A rate limit seen by a call that started before the last cut does not cut again, so a
    burst of 429s from one overload halves the limit once, not down to the floor.
    """

    def __init__(self, max_concurrency: int, min_concurrency: int = 1, *, increase: float = 1.0) -> None:
        if min_concurrency < 1 or max_concurrency < min_concurrency:
            raise ValueError(
                f"need 1 <= min_concurrency <= max_concurrency, got min={min_concurrency}, max={max_concurrency}"
            )
        if increase <= 0:
            raise ValueError(f"increase must be positive, got {increase}")
        self.max_concurrency = max_concurrency
        self.min_concurrency = min_concurrency
        self._increase = increase
        self._limit = float(max_concurrency)
        self._in_flight = 0
        self._generation = 0  # bumped on every cut
        self._cond = threading.Condition()
        self._local = threading.local()

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
    def slot(self) -> Iterator[None]:
        """Block until a call may start, and hold the slot for the body of the ``with``."""
        with self._cond:
            while self._in_flight >= int(self._limit):
                self._cond.wait()
            self._in_flight += 1
            generation = self._generation
        outer = getattr(self._local, "generation", None)
        self._local.generation = generation
        try:
            yield
        finally:
            self._local.generation = outer
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()

    def on_success(self) -> None:
        """A call succeeded: allow a little more concurrency, up to the maximum."""
        with self._cond:
            if self._limit < self.max_concurrency:
                self._limit = min(float(self.max_concurrency), self._limit + self._increase)
                self._cond.notify_all()

    def on_rate_limited(self) -> None:
        """The provider said slow down: halve the limit, not below the minimum."""
        started = getattr(self._local, "generation", None)
        with self._cond:
            if started is not None and started < self._generation:
                return  # this call was already in flight when we last cut; already counted
            self._limit = max(float(self.min_concurrency), self._limit / 2.0)
            self._generation += 1

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
