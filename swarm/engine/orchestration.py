"""The orchestrator's tools, exactly as Kimi K2.5 defines them, and their argument checks."""

from __future__ import annotations

import re
from typing import Any

from swarm.constants import ASSIGN_TASK, CREATE_SUBAGENT
from swarm.tools.base import tool_schema

CREATE_SUBAGENT_SCHEMA = tool_schema(
    CREATE_SUBAGENT,
    "Create a custom subagent with specific system prompt and name for reuse.",
    {"type": "object",
     "properties": {
         "name": {"type": "string", "description": "Unique name of this agent configuration"},
         "system_prompt": {"type": "string",
                           "description": "System prompt defining the agent's role, capabilities, and boundaries"},
     },
     "required": ["name", "system_prompt"]},
)

ASSIGN_TASK_SCHEMA = tool_schema(
    ASSIGN_TASK,
    "Launch a new instance of a created subagent on a task. Several assign_task calls in one turn "
    "run in parallel; each returns the subagent's single final message.",
    {"type": "object",
     "properties": {"agent": {"type": "string", "description": "Which created agent to use"},
                    "prompt": {"type": "string", "description": "The task for the agent to perform"}},
     "required": ["agent", "prompt"]},
)

ORCHESTRATION_SCHEMAS = [CREATE_SUBAGENT_SCHEMA, ASSIGN_TASK_SCHEMA]

_NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")


def check_create_subagent(args: dict[str, Any]) -> str | None:
    """An error message for the model, or None when the arguments are usable."""
    name, prompt = args.get("name"), args.get("system_prompt")
    if not isinstance(name, str) or not _NAME.match(name):
        return ("create_subagent needs 'name': 1-64 letters, digits, spaces, '_', '-' or '.'. "
                f"Got {name!r}.")
    if not isinstance(prompt, str) or not prompt.strip():
        return "create_subagent needs a non-empty 'system_prompt' string."
    return None


def check_assign_task(args: dict[str, Any]) -> str | None:
    agent, prompt = args.get("agent"), args.get("prompt")
    if not isinstance(agent, str) or not agent:
        return "assign_task needs 'agent': the name given to create_subagent."
    if not isinstance(prompt, str) or not prompt.strip():
        return "assign_task needs a non-empty 'prompt' string describing the task."
    return None
