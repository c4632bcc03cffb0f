"""The ``echo`` tool: returns its input. Used by benchmarks to measure the engine, not tools."""

from __future__ import annotations

from typing import Any

from swarm.tools.base import ToolContext, ToolResult


class EchoTool:
    """Returns ``text`` unchanged."""

    name = "echo"
    description = "Return the given text unchanged."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "Text to return."}},
        "required": ["text"],
        "additionalProperties": False,
    }
    uses_workspace = False

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        text = args.get("text")
        if not isinstance(text, str):
            return ToolResult("argument 'text' is required and must be a string", is_error=True)
        return ToolResult(text)
