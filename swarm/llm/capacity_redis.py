"""A provider's capacity shared by every worker process of a cluster, kept in Redis.

Concurrency slots are leases (:mod:`swarm.llm.capacity_lua`): a thread of this process renews
the leases of the calls it holds, so a worker killed with its slots frees them within
``SWARM_PROVIDER_LEASE_SECONDS``. A call waiting for a slot wakes when a call of its own process
ends (a local handoff, no Redis round trip lost) or after a short poll for slots freed elsewhere.

If Redis cannot be reached the call goes on under this process's own limiter with the same
limits (fail open, logged): the broker being down stops the cluster's dispatching anyway, and a
call already dispatched should not fail for a counter; the provider's own 429s still slow it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from swarm.domain.capacity import ProviderLimits, provider_label
from swarm.llm import capacity_lua
from swarm.llm.capacity import CapacityView
from swarm.llm.limiter import AdaptiveLimiter

log = logging.getLogger(__name__)

#: Longest pause between two tries of a call waiting for a slot freed on another node.
POLL_SECONDS = 0.1


@dataclass
class _Lease:
    token: str
    minute: int
    gen: int
    reserved: int
    outcome: str = "other"
    used: int | None = None
    retry_after: float = 0.0
    local: bool = False  # taken from the fallback limiter: Redis was unreachable


class RedisCapacity:
    """The :class:`~swarm.llm.capacity.Capacity` of one provider, shared through ``client``."""

    def __init__(
        self,
        client: redis.Redis,
        provider: str,
        limits: ProviderLimits,
        *,
        lease_seconds: float = 30.0,
        fallback_concurrency: int = 128,
    ) -> None:
        self.provider, self.limits = provider, limits
        digest = hashlib.sha256(provider.encode()).hexdigest()[:16]
        self.prefix = f"swarm:cap:{digest}:"
        self._keys = [self.prefix + k for k in ("state", "slots", "hold")] + [self.prefix]
        self._redis = client
        self._acquire = client.register_script(capacity_lua.ACQUIRE)
        self._release = client.register_script(capacity_lua.RELEASE)
        self._renew = client.register_script(capacity_lua.RENEW)
        self._view = client.register_script(capacity_lua.VIEW)
        self.lease_ms = int(lease_seconds * 1000)
        # Renew well within the lease; the hold after a lost state outlasts two renewals.
        self.renew_every = min(lease_seconds / 3.0, 1.0)
        self.rebuild_ms = int((2 * self.renew_every + 0.5) * 1000)
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._cond = threading.Condition()
        self._held: dict[str, _Lease] = {}
        self._waiting = 0
        self._local = threading.local()
        self._renewer: threading.Thread | None = None
        self._fallback = AdaptiveLimiter(
            limits.concurrency or fallback_concurrency, increase=None, rpm=limits.rpm, tpm=limits.tpm, hold=True
        )

    # ------------------------------------------------------------------ the call's slot

    @contextmanager
    def slot(self, tokens: int = 0) -> Iterator[None]:
        lease = self._take(tokens)
        if lease.local:
            with self._fallback.slot(tokens):
                yield from self._hold(lease)
            return
        yield from self._hold(lease)

    def _hold(self, lease: _Lease) -> Iterator[None]:
        outer = getattr(self._local, "lease", None)
        self._local.lease = lease
        try:
            yield
        finally:
            self._local.lease = outer
            self._give_back(lease)

    def _take(self, tokens: int) -> _Lease:
        token = uuid.uuid4().hex
        self._ensure_renewer()
        args = self._args(token, tokens)
        with self._cond:
            self._waiting += 1
        try:
            while True:
                try:
                    granted, wait_ms, gen, _ = self._acquire(keys=self._keys, args=args)
                except redis.RedisError as exc:
                    log.warning("provider capacity in Redis unreachable (%s); this process limits itself", exc)
                    return _Lease(token, 0, 0, tokens, local=True)
                if granted:
                    lease = _Lease(token, int(wait_ms), int(gen), tokens)
                    with self._cond:
                        self._held[token] = lease
                    return lease
                # A slot freed by this process wakes us at once; one freed elsewhere, at the poll.
                pause = POLL_SECONDS if wait_ms < 0 else min(wait_ms / 1000.0, 5.0)
                with self._cond:
                    self._cond.wait(pause * (0.5 + random.random()))
        finally:
            with self._cond:
                self._waiting -= 1

    def _args(self, token: str, tokens: int) -> list[str | int]:
        lim = self.limits
        return [token, self.lease_ms, lim.concurrency or 0, lim.rpm or 0, lim.tpm or 0, tokens, self.rebuild_ms]

    def _give_back(self, lease: _Lease) -> None:
        with self._cond:
            self._held.pop(lease.token, None)
        if not lease.local:
            diff = 0 if lease.used is None else lease.used - lease.reserved
            args: list[str | int] = [lease.token, lease.outcome, self.limits.concurrency or 0, lease.gen]
            args += [int(lease.retry_after * 1000), lease.minute, diff]
            try:
                self._release(keys=self._keys, args=args)
            except redis.RedisError as exc:
                log.warning("could not free a provider slot in Redis (%s); its lease frees it", exc)
        with self._cond:
            self._cond.notify()

    def on_success(self, tokens: int | None = None) -> None:
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None:
            return
        lease.outcome, lease.used = "ok", tokens
        if lease.local:
            self._fallback.on_success(tokens)

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None:
            return
        lease.outcome, lease.retry_after = "429", retry_after or 0.0
        if lease.local:
            self._fallback.on_rate_limited(retry_after)

    # ------------------------------------------------------------------ leases

    def _ensure_renewer(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        with self._cond:
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, name="swarm-capacity-renew", daemon=True)
                self._renewer.start()

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.renew_every)
            try:
                self.renew()
            except redis.RedisError as exc:
                log.warning("could not renew provider slots in Redis: %s", exc)

    def renew(self) -> None:
        """Extend the leases of the slots this process holds (re-adding any Redis lost)."""
        with self._cond:
            tokens = [t for t, lease in self._held.items() if not lease.local]
            waiting = self._waiting
        keys = [self.prefix + "slots", self.prefix + "waiters", self.prefix + "state"]
        self._renew(keys=keys, args=[self.lease_ms, self.worker, waiting, *tokens])

    # ------------------------------------------------------------------ metrics

    def snapshot(self) -> CapacityView:
        keys = [*self._keys[:3], self.prefix + "waiters"]
        try:
            limit, in_flight, waiting, calls, throttled, hold_ms = self._view(keys=keys)
        except redis.RedisError:
            return self._fallback.snapshot()
        lim = self.limits
        return CapacityView(
            label=provider_label(self.provider),
            shared=True,
            max_concurrency=lim.concurrency,
            limit=float(limit) if limit else float(lim.concurrency or 0),
            in_flight=int(in_flight),
            waiting=int(waiting),
            calls=int(calls),
            throttled=int(throttled),
            rpm=lim.rpm,
            tpm=lim.tpm,
            hold_seconds=int(hold_ms) / 1000.0,
        )

    def __repr__(self) -> str:
        return f"RedisCapacity({provider_label(self.provider)!r}, {self.limits})"
