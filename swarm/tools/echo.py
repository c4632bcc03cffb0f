"""The ``echo`` tool: returns its input. Used by benchmarks to measure the engine, not tools."""

from __future__ import annotations

from pydantic import Field

from swarm.tools.arguments import Arguments, ArgumentsTool
from swarm.tools.base import ToolContext, ToolResult


class EchoArgs(Arguments):
    text: str = Field(description="Text to return.")

    problems = {"text": "argument 'text' is required and must be a string"}


class EchoTool(ArgumentsTool[EchoArgs]):
    """Returns ``text`` unchanged."""

    name = "echo"
    description = "Return the given text unchanged."
    arguments = EchoArgs

    def call(self, args: EchoArgs, ctx: ToolContext) -> ToolResult:
        return ToolResult(args.text)
