"""The simulated provider's economics: a concurrency cap, requests and tokens per minute.

A real provider answers the excess over an account's limits with HTTP 429 and a ``Retry-After``;
so does the sim when it is given limits (``swarm sim-llm --max-concurrency N --rpm N --tpm N``,
or ``POST /sim/limits`` mid-run, which is how a test provokes a 429 storm). A refused request is
not a served one: it is counted apart (``throttled``), and the peak of requests in flight is kept
so a test can prove that a cluster never exceeded the cap.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: The window of the per-minute limits.
WINDOW = 60.0
#: What the sim answers a request refused for concurrency: Kimi's own answer gives no wait, a
#: short one is what a client would pick.
CONCURRENCY_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class SimLimits:
    """None: unlimited."""

    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"sim limit {name} must be a positive integer or null, got {value!r}")

    @classmethod
    def from_json(cls, data: Any) -> SimLimits:
        if not isinstance(data, dict) or set(data) - {"max_concurrency", "rpm", "tpm"}:
            raise ValueError('expected {"max_concurrency": N|null, "rpm": N|null, "tpm": N|null}')
        return cls(**data)


class SimCapacity:
    """Admission of requests under :class:`SimLimits`; thread-safe. ``admit`` before the work,
    ``release`` after it (only for an admitted request)."""

    def __init__(self, limits: SimLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits or SimLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak = 0
        self._throttled = 0
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0

    @property
    def limits(self) -> SimLimits:
        return self._limits

    def set_limits(self, limits: SimLimits) -> None:
        """New limits from now on; calls in flight finish (a real provider lowers a cap the same way)."""
        with self._lock:
            self._limits = limits

    def admit(self, tokens: int) -> float | None:
        """None if a request of ``tokens`` prompt tokens may run now (it then holds a slot);
        otherwise the seconds to put in its 429's ``Retry-After``."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            lim = self._limits
            wait: float | None = None
            if lim.max_concurrency is not None and self._in_flight >= lim.max_concurrency:
                wait = CONCURRENCY_RETRY_AFTER
            elif lim.rpm is not None and len(self._requests) >= lim.rpm:
                wait = self._requests[0] + WINDOW - now
            elif lim.tpm is not None and self._token_sum + tokens > lim.tpm and self._tokens:
                wait = self._tokens[0][0] + WINDOW - now
            if wait is not None:
                self._throttled += 1
                # Whole seconds, as providers send them; never 0, which would invite a hot loop.
                return float(max(1, math.ceil(wait)))
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._requests.append(now)
            self._tokens.append((now, tokens))
            self._token_sum += tokens
            return None

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _expire(self, now: float) -> None:
        while self._requests and self._requests[0] <= now - WINDOW:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= now - WINDOW:
            self._token_sum -= self._tokens.popleft()[1]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "limits": asdict(self._limits),
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak,
                "throttled": self._throttled,
            }

    def reset(self) -> None:
        """Forget the counters (not the limits, nor requests still in flight)."""
        with self._lock:
            self._peak = self._in_flight
            self._throttled = 0
            self._requests.clear()
            self._tokens.clear()
            self._token_sum = 0


def limits_endpoint(capacity: SimCapacity) -> Callable[[Request], Awaitable[Response]]:
    """``GET /sim/limits``: the limits and counters; ``POST``: new limits, as JSON."""

    async def limits(request: Request) -> Response:
        # A real provider's limits change under a running client too: the 429-storm test lowers them.
        if request.method == "POST":
            try:
                capacity.set_limits(SimLimits.from_json(json.loads(await request.body())))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(capacity.stats())

    return limits
