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
from swarm.domain.capacity import ProviderLimits, check_run_limits, provider_id, provider_label, resolve_limits
from swarm.exceptions import InputError, ProviderNotConfigured
from swarm.llm.capacity import Capacity
from swarm.llm.limiter import AdaptiveLimiter, shared_limiter
from swarm.provider_profiles import DEFAULT

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


def settings_for(settings: Settings, name: str | None) -> Settings:
    """The settings of a call to provider ``name`` (a SWARM_PROVIDERS name; None or "": the
    SWARM_LLM_* one): its base URL, key, model and limits in place of the default's. Raises
    ProviderNotConfigured when this process does not know the name."""
    if not name:
        return settings
    profile = settings.named_providers().get(name)
    if profile is None:
        known = ", ".join(sorted(settings.named_providers())) or "none"
        raise ProviderNotConfigured(
            f"this worker has no provider named {name!r} (it knows: {known}); set the same SWARM_PROVIDERS "
            "(and the variables its keys reference) on every worker"
        )
    return settings.model_copy(
        update={
            "llm_base_url": profile.base_url,
            "llm_api_key": profile.api_key,
            "model": profile.model,
            "provider_tier": "",  # resolved into the profile's limits
            "provider_concurrency": profile.concurrency,
            "provider_rpm": profile.rpm,
            "provider_tpm": profile.tpm,
        }
    )


def check_run_provider(settings: Settings, name: str | None, run: ProviderLimits) -> Settings:
    """The settings of the provider a run asks for, checked where the run is submitted: InputError
    for a name this deployment does not know (listing the known ones) or a limit of the run's
    above the account's (a run can only lower them)."""
    if name:
        known = settings.named_providers()
        if name not in known:
            listed = ", ".join(sorted(known)) or "none (set SWARM_PROVIDERS)"
            raise InputError(f"unknown provider {name!r}; known providers: {listed}")
    chosen = settings_for(settings, name)
    try:
        check_run_limits(account_limits(chosen), run, name or DEFAULT)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return chosen


def known_providers(settings: Settings) -> list[dict[str, object]]:
    """Every provider this process can call (the default, then SWARM_PROVIDERS'), for
    ``swarm worker --check``: name, account label (a key digest, never the key) and limits."""
    rows: list[dict[str, object]] = []
    for name in ["", *sorted(settings.named_providers())]:
        s = settings_for(settings, name)
        limits = account_limits(s)
        pid = provider_id(s.llm_base_url, s.llm_api_key.get_secret_value(), s.model)
        rows.append(
            {
                "name": name or DEFAULT,
                "provider": provider_label(pid),
                "concurrency": limits.concurrency,
                "rpm": limits.rpm,
                "tpm": limits.tpm,
            }
        )
    return rows


def account_limits(settings: Settings) -> ProviderLimits:
    s = settings
    return resolve_limits(s.provider_tier, s.provider_concurrency, s.provider_rpm, s.provider_tpm)


def provider_views(settings: Settings) -> list[dict[str, object]]:
    """The capacity of every provider this process knows that has limits, as JSON (the default
    first, then SWARM_PROVIDERS'; two names of one account show once)."""
    views: dict[str, dict[str, object]] = {}
    for name in ["", *sorted(settings.named_providers())]:
        s = settings_for(settings, name)
        if account_limits(s).limited:
            view = capacity_for(s).snapshot().as_json()
            views.setdefault(str(view["provider"]), view)
    return list(views.values())


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
