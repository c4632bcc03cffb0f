"""Which provider a model call goes to, and the run's own limits on top of the account's.

:class:`ProviderRouter` is the model client the executor holds: it hands each call to the
:class:`~swarm.llm.client.LLMClient` of the run's provider (``CallContext.provider``: a
SWARM_PROVIDERS name, resolved from this process's own settings; "": the SWARM_LLM_* one), one
client per provider, built on first use and kept. A run that set lower limits for its provider
(``CallContext.run_limits``) first takes a slot of its own run's limiter, then the account's (in
the client), so a run waiting for its own cap never holds a slot of the shared account.

The run's limiter is this process's (an in-process AIMD limiter with fixed limits): in a
cluster each worker process holds the run to its cap, so the run as a whole may use up to the
cap times the worker processes serving it; the account's limits stay cluster-wide.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from swarm.config import Settings
from swarm.domain.capacity import ProviderLimits, estimate_tokens, run_limits
from swarm.domain.llm import CallContext, LLMResponse
from swarm.llm.client import LLMClient
from swarm.llm.limiter import AdaptiveLimiter
from swarm.llm.providers import account_limits, settings_for

#: Runs whose limiters a process keeps (the least recently used is dropped past this).
MAX_RUN_LIMITERS = 1024
_NO_CONTEXT = CallContext()


class ProviderRouter:
    """A model client over every provider this process knows. Safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        # The default provider's client is built now: an empty SWARM_LLM_BASE_URL fails at start.
        self._clients: dict[str, tuple[ProviderLimits, LLMClient]] = {
            "": (account_limits(settings), LLMClient(settings))
        }
        self._runs: OrderedDict[tuple[str, ProviderLimits], AdaptiveLimiter] = OrderedDict()

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        ctx: CallContext = _NO_CONTEXT,
        *,
        model: str | None = None,
        still_wanted: Callable[[], bool] | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        account, client = self.client(ctx.provider)
        mine = run_limits(account, ProviderLimits(*ctx.run_limits))

        def call() -> LLMResponse:
            return client.complete(messages, tools, ctx, model=model, still_wanted=still_wanted, max_tokens=max_tokens)

        if not mine.limited:
            return call()
        limiter = self._run_limiter(ctx.run_id, mine)
        with limiter.slot(tokens=estimate_tokens(prompt_chars(messages), max_tokens)):
            response = call()
            limiter.on_success(tokens=response.tokens_in + response.tokens_out)
            return response

    def route(self, ctx: CallContext) -> tuple[LLMClient, AdaptiveLimiter | None]:
        """The client of the call's provider, and its run's own limiter (None: the run set no
        limits of its own) — what the model loop (``swarm.llm.aio``) awaits in place of
        :meth:`complete`."""
        account, client = self.client(ctx.provider)
        mine = run_limits(account, ProviderLimits(*ctx.run_limits))
        return client, (self._run_limiter(ctx.run_id, mine) if mine.limited else None)

    @property
    def default(self) -> LLMClient:
        """The SWARM_LLM_* provider's client (built at start)."""
        return self._clients[""][1]

    def client(self, provider: str) -> tuple[ProviderLimits, LLMClient]:
        """The account limits and client of ``provider``; ProviderNotConfigured when this process
        does not know it."""
        with self._lock:
            known = self._clients.get(provider)
            if known is None:
                settings = settings_for(self._settings, provider)
                known = self._clients[provider] = (account_limits(settings), LLMClient(settings))
            return known

    def _run_limiter(self, run_id: str, limits: ProviderLimits) -> AdaptiveLimiter:
        key = (run_id, limits)
        with self._lock:
            limiter = self._runs.get(key)
            if limiter is None:
                ceiling = limits.concurrency or self._settings.llm_max_concurrency
                limiter = self._runs[key] = AdaptiveLimiter(
                    ceiling, increase=None, rpm=limits.rpm, tpm=limits.tpm, hold=True, label=f"run {run_id}"
                )
                while len(self._runs) > MAX_RUN_LIMITERS:
                    self._runs.popitem(last=False)
            self._runs.move_to_end(key)
            return limiter

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            client.close()


def prompt_chars(messages: list[dict[str, Any]]) -> int:
    # The client's estimate: message characters, without serializing the request.
    return sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
