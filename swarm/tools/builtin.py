"""The registry of tools every swarm agent may be given."""

from __future__ import annotations

from swarm.config import Settings
from swarm.tools.base import ToolRegistry
from swarm.tools.plugin import discover


def default_registry(settings: Settings) -> ToolRegistry:
    """python, web_fetch, web_search, echo and every installed ``swarm.tools`` plugin, as
    SWARM_TOOLS_ENABLED / SWARM_TOOLS_DISABLED choose (:func:`swarm.tools.plugin.discover`)."""
    return discover(settings)
