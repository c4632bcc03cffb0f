"""Model calls on one asyncio event loop per process: model I/O not bound by threads.

A model step is claim (database) → build the request (database) → the HTTP call (long, I/O) →
commit (database). Only the HTTP call is long, so only it runs here, as a coroutine on this
process's loop; the claim and the commit stay synchronous on the caller's few threads. A call
waiting for provider capacity is an awaiting coroutine too (``AdaptiveLimiter.acquire``): it
holds no thread, only its step's lease, which the process's heartbeat renews while the step is
in the executor's ``in_flight``. A process that dies mid-call loses nothing: the lease lapses and
the sweeper hands the step out again; a committed call is never repeated (the commit's fence).

How many calls a process holds at once is bounded by the provider capacity and
``SWARM_LLM_MAX_IN_FLIGHT`` (the memory budget), not by a thread count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

from swarm.domain.capacity import estimate_tokens
from swarm.domain.llm import CallContext, LLMResponse
from swarm.exceptions import FenceLost, LLMError, LLMRateLimited
from swarm.llm.client import LLMClient, _prompt_chars, parse_completion
from swarm.llm.errors import map_response_error, map_transport_errors
from swarm.llm.limiter import AdaptiveLimiter
from swarm.llm.routing import ProviderRouter, prompt_chars

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelLoop:
    """This process's event loop for model calls, on a thread of its own.

    HTTP clients come from a free list, one connection each, taken for one call and given back:
    httpcore's pool scans every pooled connection on every request, so one client holding a
    thousand connections would spend the loop's time scanning (docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="swarm-model-io", daemon=True)
        self._thread.start()
        self._idle: dict[str, list[httpx.AsyncClient]] = {}
        self._tls = ssl.create_default_context()
        self.pid = os.getpid()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its outcome arrives in the returned future."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def acomplete(
        self,
        llm: LLMClient | ProviderRouter,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        ctx: CallContext,
        **kw: Any,
    ) -> Coroutine[Any, Any, LLMResponse]:
        """The coroutine of one model call (:func:`acomplete`, or :func:`arouted` through the
        run's provider), to :meth:`submit`."""
        if isinstance(llm, ProviderRouter):
            return arouted(self, llm, messages, tools, ctx, **kw)
        return acomplete(self, llm, messages, tools, ctx, **kw)

    def client(self, base_url: str, timeout: float) -> httpx.AsyncClient:
        """An idle HTTP client for ``base_url`` (call on the loop), returned with :meth:`give_back`."""
        idle = self._idle.setdefault(base_url, [])
        if idle:
            return idle.pop()
        return httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            verify=self._tls,
        )

    def give_back(self, base_url: str, http: httpx.AsyncClient) -> None:
        self._idle.setdefault(base_url, []).append(http)

    def close(self) -> None:
        async def _close() -> None:
            for clients in self._idle.values():
                for http in clients:
                    await http.aclose()
            self._idle.clear()

        if self.pid == os.getpid() and self._loop.is_running():
            try:
                self.submit(_close()).result(timeout=5.0)
            except Exception:  # closing anyway
                log.debug("closing the model loop's clients failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)


_process: dict[str, ModelLoop] = {}
_process_lock = threading.Lock()


def model_loop() -> ModelLoop:
    """This process's model loop, started on first use (a forked child starts its own)."""
    with _process_lock:
        loop = _process.get("loop")
        if loop is None or loop.pid != os.getpid():
            loop = _process["loop"] = ModelLoop()
        return loop


def can_await(llm: Any) -> bool:
    """Whether ``llm``'s calls can run on the loop: a real :class:`LLMClient` (or the router over
    them, judged by its default provider's) — not a test double or a tool-only node's stand-in —
    whose capacity can be awaited. The Redis-shared capacity waits in the calling thread
    (docs/providers.md), so its calls keep the threaded path."""
    if isinstance(llm, ProviderRouter):
        llm = llm.default
    return isinstance(llm, LLMClient) and isinstance(llm.capacity, AdaptiveLimiter)


async def arouted(
    loop: ModelLoop,
    router: ProviderRouter,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    ctx: CallContext,
    **kw: Any,
) -> LLMResponse:
    """A call through the run's provider (SWARM_PROVIDERS): the run's own limiter first (a run
    waiting for its own cap holds no slot of the account), then the provider's client. A provider
    whose capacity cannot be awaited (shared through Redis) is called in a thread, as off the loop."""
    client, mine = router.route(ctx)
    if not can_await(client):
        return await asyncio.to_thread(router.complete, messages, tools, ctx, **kw)
    if mine is None:
        return await acomplete(loop, client, messages, tools, ctx, **kw)
    ticket = await mine.acquire(estimate_tokens(prompt_chars(messages), None))
    try:
        result = await acomplete(loop, client, messages, tools, ctx, **kw)
        mine.on_success(result.tokens_in + result.tokens_out, ticket=ticket)
        return result
    finally:
        mine.release(ticket)


async def acomplete(
    loop: ModelLoop,
    llm: LLMClient,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    ctx: CallContext,
    *,
    model: str | None = None,
    still_wanted: Callable[[], bool] | None = None,
    max_tokens: int | None = None,
) -> LLMResponse:
    """:meth:`LLMClient.complete` as a coroutine on the process's :class:`ModelLoop`: the same
    request, retries, error mapping and capacity, with no thread held while it waits."""
    body, headers = llm.request(messages, tools, ctx, model=model, max_tokens=max_tokens)
    attempt, throttled = 0, 0.0
    while True:
        try:
            return await _attempt(loop, llm, body, headers)
        except LLMError as exc:
            delay, throttled = llm.retry_delay(exc, attempt, throttled, ctx)
            await asyncio.sleep(delay)
            # A database read: off the loop, so the other calls' I/O goes on meanwhile.
            if still_wanted is not None and not await asyncio.to_thread(still_wanted):
                raise FenceLost("step abandoned while waiting to retry the model call") from exc
            attempt += 1


async def _attempt(loop: ModelLoop, llm: LLMClient, body: dict[str, Any], headers: dict[str, str]) -> LLMResponse:
    capacity = llm.capacity
    assert isinstance(capacity, AdaptiveLimiter)
    s = llm.settings
    ticket = await capacity.acquire(estimate_tokens(_prompt_chars(body), body.get("max_tokens")))
    try:
        http = loop.client(s.llm_base_url, s.llm_timeout)
        try:
            started = time.monotonic()
            with map_transport_errors():
                response = await http.post("/chat/completions", json=body, headers=headers)
        except BaseException:
            await http.aclose()  # its connection may be half-used: never handed out again
            raise
        loop.give_back(s.llm_base_url, http)
        latency = time.monotonic() - started
        if not response.is_success:
            error = map_response_error(response)
            if isinstance(error, LLMRateLimited):
                capacity.on_rate_limited(error.retry_after, ticket=ticket)
            raise error
        result = parse_completion(response, latency, default_model=body["model"])
        capacity.on_success(result.tokens_in + result.tokens_out, ticket=ticket)
        return result
    finally:
        capacity.release(ticket)
