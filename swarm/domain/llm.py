"""What the engine hands to and gets back from a model. Plain data, serialisable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """One tool call as the model sent it. ``arguments`` is the raw JSON text, unparsed:
    parsing (and telling the model when it is not JSON) is the engine's job."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class LLMResponse:
    """One assistant turn."""

    content: str | None
    reasoning_content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    model: str
    latency_seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)
    #: Input tokens served from the provider's prefix cache (part of ``tokens_in``).
    tokens_cached: int = 0
    #: Output tokens spent thinking, where the provider reports them (part of ``tokens_out``).
    tokens_reasoning: int = 0


@dataclass(frozen=True)
class CallContext:
    """Who is calling; sent as ``X-Swarm-*`` headers so a model proxy (or the simulated model)
    can attribute requests to runs. Contains no secrets."""

    run_id: str = ""
    agent_id: str = ""
    step_id: str = ""
    #: Sent as ``prompt_cache_key`` where the provider honours it (:func:`cache_key`).
    cache_key: str = ""
    #: Which provider the call goes to (a SWARM_PROVIDERS name; "": the SWARM_LLM_* one) and the
    #: run's own lower limits for it (concurrency, rpm, tpm; None: the account's). Not sent.
    provider: str = ""
    run_limits: tuple[int | None, int | None, int | None] = (None, None, None)


def cache_key(run_id: str, agent_name: str) -> str:
    """The prompt-cache routing key of every call of one agent definition in one run: its calls
    share their prefix (system prompt, tools), so a provider that routes by this key serves them
    from one cache. Derived, not secret; no more than 64 characters (OpenAI's limit)."""
    return "swarm-" + hashlib.sha256(f"{run_id}\n{agent_name}".encode()).hexdigest()[:40]
