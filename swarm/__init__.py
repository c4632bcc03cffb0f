"""swarm: a durable runtime for LLM agent swarms.

An orchestrator model decomposes a task, creates subagents (``create_subagent``) and runs them in
parallel (``assign_task``); every LLM call and tool call is a short durable step recorded in the
database, executed by in-process threads or by Celery workers across machines.
"""

from swarm.config import Settings, get_settings
from swarm.exceptions import SwarmError

__all__ = ["Settings", "SwarmError", "get_settings"]
__version__ = "0.1.0"
