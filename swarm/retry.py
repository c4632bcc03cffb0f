"""One retry policy for every retry outside the model client (``swarm.llm.retry`` has its own).

A :class:`RetryPolicy` says how often to try (``attempts``) and for how long (``deadline``), and
how long to wait between tries (:func:`compute_backoff`: exponential from ``base``, at most
``cap``, shortened at random by up to ``jitter`` of itself). :meth:`RetryPolicy.call` runs a
function under the policy; loops that cannot be wrapped (a stream that resumes) use
:func:`compute_backoff` and :meth:`RetryPolicy.exhausted` directly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    #: Tries in all, the first one included (None: as many as ``deadline`` allows).
    attempts: int | None = None
    #: Seconds from the first try after which no further try starts (None: no limit).
    deadline: float | None = None
    #: Wait before the first retry; each further one waits ``factor`` times longer, at most ``cap``.
    base: float = 0.1
    cap: float = 2.0
    factor: float = 2.0
    #: Fraction (0..1) by which a wait is shortened at random, so that callers failing together
    #: do not retry together.
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry policy needs attempts or a deadline")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.base < 0 or self.cap < 0 or self.factor < 1:
            raise ValueError("base and cap must be >= 0 and factor >= 1")

    def backoff(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        return compute_backoff(self, failures, rand)

    def exhausted(self, failures: int, elapsed: float, delay: float = 0.0) -> bool:
        """Whether to give up after ``failures`` failed tries, ``elapsed`` seconds after the first
        began, when the next would start ``delay`` seconds from now."""
        if self.attempts is not None and failures >= self.attempts:
            return True
        return self.deadline is not None and elapsed + delay > self.deadline

    def call(
        self,
        fn: Callable[[], T],
        retry_on: tuple[type[BaseException], ...],
        *,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """``fn()``, tried again after each ``retry_on`` exception until the policy gives up,
        when the last exception propagates. ``on_retry(exc, failures, delay)`` runs before each wait."""
        start, failures = clock(), 0
        while True:
            try:
                return fn()
            except retry_on as exc:
                failures += 1
                delay = self.backoff(failures)
                if self.exhausted(failures, clock() - start, delay):
                    raise
                if on_retry is not None:
                    on_retry(exc, failures, delay)
                sleep(delay)


def compute_backoff(policy: RetryPolicy, failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``failures``-th failed try (1 for the first) before the next."""
    if failures < 1:
        return 0.0
    delay = min(policy.cap, policy.base * policy.factor ** min(failures - 1, 64))
    if policy.jitter:
        delay *= 1.0 - policy.jitter * rand()
    return delay
