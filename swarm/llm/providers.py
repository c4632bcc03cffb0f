"""Which :class:`~swarm.llm.capacity.Capacity` a process uses for its model provider.

One per provider (base URL, key, model) and process, so every client of the process — each
worker thread may build its own — shares it:

* limits configured (``SWARM_PROVIDER_*``) and a Redis broker: :class:`RedisCapacity`, shared
  by the whole cluster;
* limits configured, embedded: an in-process AIMD limiter with those limits;
* no limits: the per-process AIMD limiter of ``SWARM_LLM_MAX_IN_FLIGHT`` (the memory budget).
"""

from __future__ import annotations

import os
import threading

from swarm.config import Settings
from swarm.domain.capacity import provider_id, provider_label, resolve_limits
from swarm.llm.capacity import Capacity
from swarm.llm.limiter import AdaptiveLimiter, shared_limiter

_lock = threading.Lock()
_by_provider: dict[tuple[str, bool], Capacity] = {}


def capacity_for(settings: Settings) -> Capacity:
    """The process-wide capacity of the provider ``settings`` call."""
    limits = resolve_limits(
        settings.provider_tier, settings.provider_concurrency, settings.provider_rpm, settings.provider_tpm
    )
    if not limits.limited:
        return shared_limiter(settings.llm_max_in_flight)
    pid = provider_id(settings.llm_base_url, settings.llm_api_key.get_secret_value(), settings.model)
    shared = settings.broker_url.startswith(("redis://", "rediss://"))
    with _lock:
        capacity = _by_provider.get((pid, shared))
        if capacity is None:
            capacity = _by_provider[(pid, shared)] = _build(settings, pid, shared)
        return capacity


def provider_views(settings: Settings) -> list[dict[str, object]]:
    """The capacity of the configured provider as JSON, or nothing when it has no limits."""
    s = settings
    if not resolve_limits(s.provider_tier, s.provider_concurrency, s.provider_rpm, s.provider_tpm).limited:
        return []
    return [capacity_for(s).snapshot().as_json()]


def _build(settings: Settings, pid: str, shared: bool) -> Capacity:
    limits = resolve_limits(
        settings.provider_tier, settings.provider_concurrency, settings.provider_rpm, settings.provider_tpm
    )
    if not shared:
        ceiling = min(limits.concurrency or settings.llm_max_in_flight, settings.llm_max_in_flight)
        return AdaptiveLimiter(
            ceiling, increase=None, rpm=limits.rpm, tpm=limits.tpm, hold=True, label=provider_label(pid)
        )
    import redis

    from swarm.llm.capacity_redis import RedisCapacity

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    return RedisCapacity(
        client,
        pid,
        limits,
        lease_seconds=settings.provider_lease_seconds,
        fallback_concurrency=settings.llm_max_concurrency,
    )


def _forget_after_fork() -> None:
    # A forked child must not share the parent's Redis connections or renewal thread state.
    global _lock  # noqa: PLW0603
    _lock = threading.Lock()
    _by_provider.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
