"""The registry of tools every swarm agent may be given."""

from __future__ import annotations

from swarm.config import Settings
from swarm.tools.base import ToolRegistry
from swarm.tools.echo import EchoTool
from swarm.tools.python_exec import PythonTool
from swarm.tools.web_fetch import WebFetchTool
from swarm.tools.web_search import WebSearchTool


def default_registry(settings: Settings) -> ToolRegistry:
    """python, web_fetch, web_search and echo, configured from ``settings``."""
    return ToolRegistry([PythonTool(), WebFetchTool(settings), WebSearchTool(settings), EchoTool()])
