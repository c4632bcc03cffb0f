"""The tool interface and the registry the engine looks tools up in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from swarm.config import Settings


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    run_id: str
    agent_id: str
    step_id: str
    #: A directory holding the run's files (restored from the database before the call);
    #: files the tool creates or changes there are saved back to the run after the call.
    workspace: Path
    settings: Settings


@dataclass(frozen=True)
class ToolImage:
    """An image a tool hands back for the model to see (an MCP image result, a plot it wrote)."""

    mime: str  # "image/png" or "image/jpeg"
    data: bytes


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model. ``is_error`` results are shown to the model as tool errors."""

    content: str
    is_error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    #: Images for the agent's next model call (carried as image parts, or a note for text-only models).
    images: tuple[ToolImage, ...] = ()


class Tool(Protocol):
    name: str
    description: str
    #: JSON schema of the arguments object.
    parameters: dict[str, Any]
    #: Whether the tool reads or writes the run's workspace (only then is it materialised).
    uses_workspace: bool

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


def tool_schema(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for one function."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


class ToolRegistry:
    """Name → tool. One registry per process; built-ins are registered by :func:`default_registry`."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        #: The names of the tools that came from plugins (``swarm.tools.plugin``): they are handed
        #: settings without swarm's secrets.
        self.plugins: frozenset[str] = frozenset()
        for t in tools:
            self.register(t)

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        chosen = self.names() if names is None else [n for n in names if n in self._tools]
        return [tool_schema(t.name, t.description, t.parameters) for t in (self._tools[n] for n in chosen)]
