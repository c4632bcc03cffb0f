"""The simulated model as a real OpenAI-compatible HTTP server.

Decisions come from :mod:`swarm.sim.script`; this module adds what only a server can do:
latency, HTTP faults, Kimi's wire-format 400s, a ledger of every request so tests can
prove that no committed LLM call was ever sent twice, and a Kimi-style prefix cache: the
tools and messages of a request, serialized, in 256-token blocks; a request's leading blocks
that an earlier request already sent are reported as ``usage.cached_tokens`` (and
``usage.prompt_tokens_details.cached_tokens``). ``/sim/usage`` lists what each request reported.
With limits (:mod:`swarm.sim.capacity`) it answers the excess with 429 like a real provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from swarm.sim import script, wire
from swarm.sim.capacity import SimCapacity, SimLimits, limits_endpoint
from swarm.sim.params import HttpFault, SimParams
from swarm.threaded_server import ThreadedServer

#: Bounds memory of a long-running sim; far above any test's request count.
LOG_LIMIT = 200_000
#: Prefix-cache blocks the sim remembers (oldest forgotten first): ~4 GB of prompt text.
CACHE_LIMIT = 4_000_000


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Where the sim listens, the model name it answers as, and the :class:`SimParams` every
    conversation starts from (a ``#sim`` directive changes them for its conversation)."""

    params: SimParams = field(default_factory=SimParams)
    host: str = "127.0.0.1"
    port: int = 8765
    model: str = script.DEFAULT_MODEL
    limits: SimLimits = field(default_factory=SimLimits)


@dataclass(kw_only=True)
class SimState:
    """The request ledger. Written from the server's event loop, read from test threads."""

    requests: int = 0
    by_run: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    #: Duplicates are counted per run: two runs given the same prompt legitimately send equal
    #: messages, one run sending the same messages twice is a repeated call.
    served: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Requests seen per conversation, for "fail the first N" HTTP faults.
    attempts: Counter[str] = field(default_factory=Counter)
    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    #: The prefix cache: digests of prompt prefixes seen, one per whole 256-token block.
    cache: dict[bytes, None] = field(default_factory=dict)
    #: Input tokens served and how many of them the cache held (the benchmark's cache share).
    tokens: Counter[str] = field(default_factory=Counter)
    #: Per conversation: how many whole blocks its last request had, and the last one's digest.
    prefixes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    usages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    lock: threading.Lock = field(default_factory=threading.Lock)
    capacity: SimCapacity = field(default_factory=SimCapacity)

    def cached_tokens(self, digests: list[bytes], conversation: str) -> tuple[int, bool]:
        """Tokens of the prompt whose blocks ``digests`` the cache holds (a leading run of
        blocks, as Kimi's prefix cache serves them); the prompt's blocks are cached after.
        Also whether the request broke its conversation's prefix: did not start with every
        whole block of the conversation's previous request (a client-side cache miss)."""
        with self.lock:
            hits = 0
            while hits < len(digests) and digests[hits] in self.cache:
                hits += 1
            for digest in digests[hits:]:
                self.cache[digest] = None
            while len(self.cache) > CACHE_LIMIT:
                del self.cache[next(iter(self.cache))]
            n, last = self.prefixes.get(conversation, (0, b""))
            broke = n > 0 and (len(digests) < n or digests[n - 1] != last)
            if digests:
                self.prefixes[conversation] = (len(digests), digests[-1])
            if len(self.prefixes) > LOG_LIMIT:
                del self.prefixes[next(iter(self.prefixes))]
        return hits * script.CACHE_CHUNK_TOKENS, broke

    def count_request(self) -> None:
        with self.lock:
            self.requests += 1

    def attempt(self, conversation: str) -> int:
        """Number this request within its conversation (1-based)."""
        with self.lock:
            self.attempts[conversation] += 1
            return self.attempts[conversation]

    def record(self, status: int, key: str, headers: dict[str, str], images: int = 0) -> None:
        """One request answered with ``status``; ``images``: the image parts it carried."""
        run_id = headers["run_id"]
        with self.lock:
            if status == 200:
                self.served[(run_id, key)] += 1
                self.by_run[run_id] += 1
            else:
                self.errors[status] += 1
            self.entries.append({"t": time.time(), "key": key, **headers, "status": status, "images": images})

    def record_usage(self, headers: dict[str, str], usage: dict[str, Any], cache_key: Any, broke: bool) -> None:
        """What a served request reported as its usage (and the ``prompt_cache_key`` it sent)."""
        with self.lock:
            self.tokens["prompt"] += usage["prompt_tokens"]
            self.tokens["cached"] += usage["cached_tokens"]
            self.tokens["completion"] += usage["completion_tokens"]
            self.tokens["prefix_breaks"] += broke
            self.usages.append(
                {
                    **headers,
                    "prompt_tokens": usage["prompt_tokens"],
                    "cached_tokens": usage["cached_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
                    "prompt_cache_key": cache_key,
                    "prefix_break": broke,
                }
            )

    def usage(self, run_id: str | None = None) -> dict[str, Any]:
        """Token totals of every served request (``prompt``, ``cached``, ``completion``), and
        each request's usage as reported, of one run or all."""
        with self.lock:
            return {
                "tokens": {k: self.tokens[k] for k in ("prompt", "cached", "completion")},
                "prefix_breaks": self.tokens["prefix_breaks"],
                "calls": [dict(u) for u in self.usages if run_id is None or u["run_id"] == run_id],
            }

    def stats(self) -> dict[str, Any]:
        with self.lock:
            served = sum(self.served.values())
            unique = len(self.served)
            return {
                "requests": self.requests,
                "served": served,
                "unique": unique,
                "duplicates": served - unique,
                "by_run": dict(self.by_run),
                "errors": {str(k): v for k, v in sorted(self.errors.items())},
                **self.capacity.stats(),
            }

    def log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries if run_id is None or e["run_id"] == run_id]

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            for counter in (self.by_run, self.errors, self.served, self.attempts, self.tokens):
                counter.clear()
            self.prefixes.clear()
            self.entries.clear()
            self.usages.clear()
            self.cache.clear()
        self.capacity.reset()


def _error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": error_type}}, status_code=status, headers=headers)


_FAULT_MESSAGES = {
    "rate_limit_reached_error": "Your account reached max request rate, please try again later",
    "exceeded_current_quota_error": (
        "Your account is suspended due to insufficient balance, please recharge your account or check your plan"
    ),
    "invalid_authentication_error": "Invalid Authentication",
    "permission_denied_error": "The API you are accessing is not open",
}


def _fault_response(fault: HttpFault) -> JSONResponse:
    headers = None if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    message = _FAULT_MESSAGES.get(fault.error_type, "simulated server error")
    return _error(fault.status, message, fault.error_type, headers)


def _swarm_headers(request: Request) -> dict[str, str]:
    h = request.headers
    # Which key called, as swarm names an account (domain.capacity.provider_id): a digest, never the key.
    auth = h.get("authorization", "")
    key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
    return {
        "run_id": h.get("x-swarm-run-id", ""),
        "agent_id": h.get("x-swarm-agent-id", ""),
        "step_id": h.get("x-swarm-step-id", ""),
        "key_digest": hashlib.sha256(key.encode()).hexdigest()[:12] if key else "",
    }


async def _read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _admit(ledger: SimState, prompt: str, key: str, headers: dict[str, str]) -> Response | None:
    """None if the request fits the sim's limits (it then holds a slot), else its 429."""
    wait = ledger.capacity.admit(len(prompt) // script.CHARS_PER_TOKEN)
    if wait is None:
        return None
    ledger.record(429, key, headers)
    limited = "rate_limit_reached_error"
    return _error(429, _FAULT_MESSAGES[limited], limited, {"Retry-After": f"{wait:g}"})


def create_app(config: SimConfig | None = None, state: SimState | None = None) -> Starlette:
    """The sim as an ASGI app; pass ``state`` to read the ledger without going through HTTP."""
    cfg = config or SimConfig()
    ledger = state or SimState()
    ledger.capacity.set_limits(cfg.limits)
    defaults = cfg.params

    async def chat_completions(request: Request) -> Response:
        ledger.count_request()
        headers = _swarm_headers(request)
        body = await _read_json(request)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(messages, list):
            ledger.record(400, "", headers)
            return _error(400, wire.validate_request(body) or "invalid request", "invalid_request_error")
        key = script.request_key(messages)
        params = script.resolve_params(messages, defaults)
        fault = params.http_fault
        # Like the real API, auth and rate limits are decided before the body is checked.
        # Faults hit the orchestrator only, so a retry test does not also multiply every
        # worker's requests.
        if fault is not None and not script.is_subagent(messages):
            nth = ledger.attempt(script.conversation_key(messages, headers["run_id"]))
            if fault.times is None or nth <= fault.times:
                ledger.record(fault.status, key, headers)
                return _fault_response(fault)
        problem = wire.validate_request(body)
        if problem is not None:
            ledger.record(400, key, headers)
            return _error(400, problem, "invalid_request_error")
        prompt = script.prompt_text(body)
        if (refused := _admit(ledger, prompt, key, headers)) is not None:
            return refused
        try:
            if params.latency > 0:
                await asyncio.sleep(params.latency)
            conversation = headers["agent_id"] or script.conversation_key(messages, headers["run_id"])
            cached, broke = ledger.cached_tokens(script.prefix_digests(prompt), conversation)
            completion = script.reply({**body, "model": body.get("model") or cfg.model}, defaults, cached_tokens=cached)
            ledger.record(200, key, headers, script.image_parts(messages))
            ledger.record_usage(headers, completion["usage"], body.get("prompt_cache_key"), broke)
            return JSONResponse(completion)
        finally:
            ledger.capacity.release()

    async def models(_: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": cfg.model, "object": "model", "created": script.CREATED, "owned_by": "swarm-sim"}],
            }
        )

    async def stats(_: Request) -> Response:
        return JSONResponse(ledger.stats())

    async def log(request: Request) -> Response:
        return JSONResponse(ledger.log(request.query_params.get("run_id")))

    async def usage(request: Request) -> Response:
        return JSONResponse(ledger.usage(request.query_params.get("run_id")))

    async def reset(_: Request) -> Response:
        ledger.reset()
        return JSONResponse({"ok": True})

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            return JSONResponse({"error": "missing q"}, status_code=400)
        return JSONResponse(search_results(query, str(request.base_url).rstrip("/")))

    async def page(request: Request) -> Response:
        slug = request.path_params["slug"]
        return HTMLResponse(
            f"<html><head><title>Sim page {slug}</title></head><body>"
            f"<h1>Sim page {slug}</h1><p>Deterministic text for {slug}.</p>"
            "</body></html>"
        )

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/sim/stats", stats, methods=["GET"]),
            Route("/sim/log", log, methods=["GET"]),
            Route("/sim/usage", usage, methods=["GET"]),
            Route("/sim/reset", reset, methods=["POST"]),
            Route("/sim/limits", limits_endpoint(ledger.capacity), methods=["GET", "POST"]),
            Route("/search", search, methods=["GET"]),
            Route("/pages/{slug}", page, methods=["GET"]),
        ]
    )
    app.state.sim = ledger
    return app


def search_results(query: str, base_url: str) -> dict[str, Any]:
    """A SearXNG ``format=json`` answer with 3 results that depend only on ``query``.

    Result URLs point back at this server's ``/pages/`` so a web_fetch test needs no internet.
    """
    tag = hashlib.sha256(query.encode()).hexdigest()[:8]
    results = [
        {
            "url": f"{base_url}/pages/{tag}-{i}",
            "title": f"Result {i} for {query}",
            "content": f"Snippet {i} about {query} ({tag}).",
            "engine": "sim",
            "engines": ["sim"],
            "category": "general",
            "score": round(1.0 / i, 3),
            "positions": [i],
        }
        for i in range(1, 4)
    ]
    return {
        "query": query,
        "number_of_results": len(results),
        "results": results,
        "answers": [],
        "corrections": [],
        "infoboxes": [],
        "suggestions": [],
        "unresponsive_engines": [],
    }


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    # ws="none": the sim speaks plain HTTP, and not importing websockets avoids its
    # deprecation warnings, which the test suite turns into errors.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_keep_alive=30,
    )


def serve(config: SimConfig | None = None) -> None:
    """Run the sim in the foreground until interrupted."""
    cfg = config or SimConfig()
    uvicorn.Server(_uvicorn_config(create_app(cfg), cfg.host, cfg.port, "info")).run()


class SimServer(ThreadedServer):
    """The sim on a free 127.0.0.1 port in a background thread, for tests.

    >>> with SimServer(SimConfig(params=SimParams(agents=2))) as sim:  # doctest: +SKIP
    ...     httpx.post(f"{sim.url}/chat/completions", json=...)
    """

    label = "simulated model server"
    thread_name = "swarm-sim"  # bench/w1.py measures this thread's CPU by its name

    def __init__(self, config: SimConfig | None = None, startup_timeout: float = 10.0) -> None:
        super().__init__(startup_timeout)
        self.config = config or SimConfig()
        self.state = SimState()

    def uvicorn_config(self, port: int) -> uvicorn.Config:
        return _uvicorn_config(create_app(self.config, self.state), "127.0.0.1", port, "warning")

    @property
    def base_url(self) -> str:
        """Server root, e.g. for ``/search`` and ``/sim/stats``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (``.../v1``), what an LLM client is configured with."""
        return f"{self.base_url}/v1"

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def log(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return self.state.log(run_id)

    def usage(self, run_id: str | None = None) -> dict[str, Any]:
        return self.state.usage(run_id)

    def reset(self) -> None:
        self.state.reset()

    def set_limits(self, limits: SimLimits) -> None:
        self.state.capacity.set_limits(limits)
