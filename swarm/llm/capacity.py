"""The one interface of a model provider's capacity, whoever keeps it.

:class:`~swarm.llm.limiter.AdaptiveLimiter` keeps it in the process (embedded mode, or no limits
configured); :class:`~swarm.llm.capacity_redis.RedisCapacity` keeps it in Redis, shared by every
worker process of a cluster. :func:`swarm.llm.providers.capacity_for` picks one. The client
calls, from the thread making the model call::

    with capacity.slot(tokens=estimate):      # waits for a slot, the windows, any Retry-After
        ... the HTTP call ...
        capacity.on_success(tokens=used)      # or on_rate_limited(retry_after) on a 429
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CapacityView:
    """What a capacity looks like now, for /metrics, ``swarm watch`` and the dashboard."""

    label: str
    shared: bool  #: kept in Redis for the whole cluster (else: this process's)
    max_concurrency: int | None
    limit: float  #: the adaptive concurrency allowed now
    in_flight: int
    waiting: int  #: calls waiting for capacity (shared: every live worker process's)
    calls: int  #: calls started (shared: cluster-wide, since the state was created)
    throttled: int  #: 429 "slow down" answers seen
    rpm: int | None = None
    tpm: int | None = None
    hold_seconds: float = 0.0  #: a Retry-After holding every call back, seconds left

    def as_json(self) -> dict[str, object]:
        return {
            "provider": self.label,
            "shared": self.shared,
            "max_concurrency": self.max_concurrency,
            "limit": round(self.limit, 2),
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "calls": self.calls,
            "throttled": self.throttled,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "hold_seconds": round(self.hold_seconds, 2),
        }


class Capacity(Protocol):
    def slot(self, tokens: int = 0) -> AbstractContextManager[None]:
        """Wait until a call expected to use ``tokens`` may start; hold its slot in the body."""
        ...

    def on_success(self, tokens: int | None = None) -> None:
        """The call of this thread's slot succeeded, using ``tokens`` (settles the estimate)."""
        ...

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """The call of this thread's slot was answered 429 "slow down"."""
        ...

    def snapshot(self) -> CapacityView: ...
