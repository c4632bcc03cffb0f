"""What the engine hands to and gets back from a model. Plain data, serialisable."""

from __future__ import annotations

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


@dataclass(frozen=True)
class CallContext:
    """Who is calling; sent as ``X-Swarm-*`` headers so a model proxy (or the simulated model)
    can attribute requests to runs. Contains no secrets."""

    run_id: str = ""
    agent_id: str = ""
    step_id: str = ""
