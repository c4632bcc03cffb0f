"""The synchronous, thread-safe chat-completions client that workers use to call the model."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx

from swarm.config import Settings
from swarm.domain.capacity import estimate_tokens
from swarm.domain.llm import CallContext, LLMResponse, ToolCall
from swarm.exceptions import ConfigError, FenceLost, LLMError, LLMRateLimited
from swarm.llm.capacity import Capacity
from swarm.llm.errors import map_response_error, map_transport_errors, unusable_response
from swarm.llm.providers import capacity_for
from swarm.llm.retry import backoff_delay, should_retry

log = logging.getLogger(__name__)

# Kimi K2.5's recommended (and on Moonshot, enforced) sampling temperatures.
THINKING_TEMPERATURE = 1.0
INSTANT_TEMPERATURE = 0.6

_NO_CONTEXT = CallContext()
#: Flavours whose API takes a ``prompt_cache_key`` (Moonshot's and OpenAI's); vLLM and SGLang
#: route without one and would only warn about an unknown field.
CACHE_KEY_FLAVORS = frozenset({"moonshot", "openai"})


class LLMClient:
    """Calls ``POST {SWARM_LLM_BASE_URL}/chat/completions``, retrying what is worth retrying.

    One instance may be shared by any number of threads.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        limiter: Capacity | None = None,
    ) -> None:
        self._settings = settings
        if http is None:
            if not settings.llm_base_url:
                raise ConfigError(
                    "SWARM_LLM_BASE_URL is empty, so there is no model endpoint to call. Set it "
                    "(e.g. https://api.moonshot.ai/v1) or use the simulated model."
                )
            self._clients: _PerThread | None = _PerThread(settings)
        else:
            self._clients = None
        self._given = http
        self._sleep = sleep
        self._rand = rand
        self._limiter = limiter if limiter is not None else capacity_for(settings)

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
        """One assistant turn for ``messages``. Raises :class:`LLMError` subclasses, or
        :class:`FenceLost` when ``still_wanted()`` says, before a retry, that nobody awaits the
        answer any more (the run was cancelled or the step taken over): a stopped run must not
        keep calling the model from a backoff loop."""
        body, headers = self.request(messages, tools, ctx, model=model, max_tokens=max_tokens)
        attempt = 0
        throttled = 0.0  # seconds slept on 429 "slow down" answers
        while True:
            try:
                return self._attempt(body, headers)
            except LLMError as exc:
                delay, throttled = self.retry_delay(exc, attempt, throttled, ctx)
                self._sleep(delay)
                if still_wanted is not None and not still_wanted():
                    raise FenceLost("step abandoned while waiting to retry the model call") from exc
                attempt += 1

    def request(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        ctx: CallContext = _NO_CONTEXT,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The body and headers of the chat-completions request for one turn (sync or async)."""
        body = self._body(messages, tools, model or self._settings.model, ctx.cache_key)
        if max_tokens is not None:  # a run with a budget: the bound its reservation assumed
            body["max_tokens"] = max_tokens
        return body, self._headers(ctx)

    def retry_delay(self, exc: LLMError, attempt: int, throttled: float, ctx: CallContext) -> tuple[float, float]:
        """After failed attempt ``attempt``: (seconds to wait before the next, seconds throttled
        so far including that wait), or ``exc`` raised again when it is not worth retrying."""
        max_retries = self._settings.llm_max_retries
        # A 429 "slow down" is the provider's capacity, not a fault of this call: it does
        # not use up the retries; only waiting past the patience fails the step.
        rate_limited = isinstance(exc, LLMRateLimited)
        if rate_limited and throttled < self._settings.llm_rate_limit_patience:
            attempt = min(attempt, max(0, max_retries - 1))
        if not should_retry(exc, attempt, max_retries):
            if exc.retryable:
                exc.add_note(f"gave up after {attempt} retries")
            raise exc
        delay = backoff_delay(attempt, retry_after=exc.retry_after, rand=self._rand())
        log.warning(
            "model call failed (%s, status %s); retry %d/%d in %.1fs [run=%s agent=%s step=%s]",
            type(exc).__name__,
            exc.status_code,
            attempt + 1,
            max_retries,
            delay,
            ctx.run_id or "-",
            ctx.agent_id or "-",
            ctx.step_id or "-",
        )
        # At least a second each: a provider's "slow down" is never shorter in practice.
        return delay, throttled + (max(delay, 1.0) if rate_limited else 0.0)

    @property
    def capacity(self) -> Capacity:
        """The provider capacity every call of this client waits for."""
        return self._limiter

    @property
    def settings(self) -> Settings:
        return self._settings

    def _attempt(self, body: dict[str, Any], headers: dict[str, str]) -> LLMResponse:
        # The slot is released before any backoff sleep: the lowered limit is what slows
        # everyone down, a sleeping thread need not also hold capacity.
        with self._limiter.slot(estimate_tokens(_prompt_chars(body), body.get("max_tokens"))):
            started = time.monotonic()
            with map_transport_errors():
                response = self._http().post("/chat/completions", json=body, headers=headers)
            latency = time.monotonic() - started
            if not response.is_success:
                error = map_response_error(response)
                if isinstance(error, LLMRateLimited):
                    self._limiter.on_rate_limited(error.retry_after)
                raise error
            result = parse_completion(response, latency, default_model=body["model"])
            self._limiter.on_success(result.tokens_in + result.tokens_out)
            return result

    def _body(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], model: str, cache_key: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if tools:
            body["tools"] = tools
        flavor, thinking = self._settings.llm_flavor, self._settings.llm_thinking
        if cache_key and flavor in CACHE_KEY_FLAVORS:
            body["prompt_cache_key"] = cache_key
        if flavor == "openai":
            return body
        body["temperature"] = THINKING_TEMPERATURE if thinking else INSTANT_TEMPERATURE
        if not thinking:
            # Thinking is Kimi's default; each serving stack has its own switch to turn it off.
            if flavor == "moonshot":
                body["thinking"] = {"type": "disabled"}
            else:
                body["chat_template_kwargs"] = {"thinking": False}
        return body

    def _headers(self, ctx: CallContext) -> dict[str, str]:
        headers: dict[str, str] = {}
        key = self._settings.llm_api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for name, value in (("Run", ctx.run_id), ("Agent", ctx.agent_id), ("Step", ctx.step_id)):
            if value:
                headers[f"X-Swarm-{name}-Id"] = value
        return headers

    def _http(self) -> httpx.Client:
        if self._clients is not None:
            return self._clients.get()
        assert self._given is not None
        return self._given

    def _base_url(self) -> str:
        return str(self._given.base_url) if self._given is not None else self._settings.llm_base_url

    def close(self) -> None:
        """Close the HTTP connection pools, unless the client was handed in by the caller."""
        if self._clients is not None:
            self._clients.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._settings
        key = "set" if s.llm_api_key.get_secret_value() else "unset"
        return (
            f"LLMClient(base_url={self._base_url()!r}, model={s.model!r}, "
            f"flavor={s.llm_flavor!r}, thinking={s.llm_thinking}, api_key={key})"
        )


class _PerThread:
    """One ``httpx.Client`` per calling thread, all sharing one TLS context.

    httpcore's pool checks every pooled connection (a ``poll()`` and more per connection) on
    every request: one client shared by 100+ threads spent more CPU scanning its pool than on the
    rest of the call. A thread makes one call at a time, so with a client of its own that scan
    covers one connection. Threads of a worker pool live as long as the process, and so do
    their clients (one kept-alive connection each, as a shared pool would have held anyway).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tls = httpx.create_ssl_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[httpx.Client] = []

    def get(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None or client.is_closed:
            client = httpx.Client(
                base_url=self._settings.llm_base_url,
                timeout=httpx.Timeout(self._settings.llm_timeout, connect=10.0),
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
                verify=self._tls,
            )
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()


def _prompt_chars(body: dict[str, Any]) -> int:
    """Characters of a request's messages: enough for a token estimate, without serializing it."""
    return sum(len(str(m.get("content") or "")) for m in body["messages"] if isinstance(m, dict))


def parse_completion(response: httpx.Response, latency: float, *, default_model: str) -> LLMResponse:
    """The :class:`LLMResponse` in a 2xx chat-completions ``response``; a body that is not
    a completion raises a (retryable) :class:`~swarm.exceptions.LLMServerError`."""
    try:
        data: Any = response.json()
    except ValueError:
        raise unusable_response(response, "a body that is not JSON") from None
    if not isinstance(data, dict):
        raise unusable_response(response, "a JSON body that is not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise unusable_response(response, "no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise unusable_response(response, "a choice without a message")
    reasoning = _text(message.get("reasoning_content"))
    if reasoning is None:
        reasoning = _text(message.get("reasoning"))  # vLLM's name for it
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return LLMResponse(
        content=_text(message.get("content")),
        reasoning_content=reasoning,
        tool_calls=_tool_calls(message.get("tool_calls"), response),
        finish_reason=choice.get("finish_reason"),
        tokens_in=_count(usage.get("prompt_tokens")),
        tokens_out=_count(usage.get("completion_tokens")),
        model=str(data.get("model") or default_model),
        latency_seconds=latency,
        raw=message,
        tokens_cached=cached_tokens(usage),
        tokens_reasoning=_count(_details(usage, "completion_tokens_details").get("reasoning_tokens")),
    )


def cached_tokens(usage: dict[str, Any]) -> int:
    """Input tokens served from the prefix cache: Moonshot reports ``usage.cached_tokens``, OpenAI
    and vLLM ``usage.prompt_tokens_details.cached_tokens``; the larger, if both are there."""
    return max(
        _count(usage.get("cached_tokens")), _count(_details(usage, "prompt_tokens_details").get("cached_tokens"))
    )


def _details(usage: dict[str, Any], name: str) -> dict[str, Any]:
    value = usage.get(name)
    return value if isinstance(value, dict) else {}


def _tool_calls(value: Any, response: httpx.Response) -> tuple[ToolCall, ...]:
    if not value:
        return ()
    if not isinstance(value, list):
        raise unusable_response(response, "tool_calls that are not a list")
    calls = []
    for index, item in enumerate(value):
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise unusable_response(response, f"tool call {index} without a function name")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"  # a tool without parameters; some servers omit the field
        elif not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = item.get("id") or f"functions.{name}:{index}"  # Kimi's own id format
        calls.append(ToolCall(id=str(call_id), name=name, arguments=arguments))
    return tuple(calls)


def _text(value: Any) -> str | None:
    """Message text; some servers send a list of content parts instead of a string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(part.get("text", "")) for part in value if isinstance(part, dict))
    return str(value)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
