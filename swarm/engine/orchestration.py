"""The orchestrator's tools, exactly as Kimi K2.5 defines them, and their argument checks.

The schemas are literal, not generated from the argument models below: they are Kimi's wire
contract, trained into the model, and must reach it byte for byte (tests/unit/test_tool_arguments.py
pins them and checks that the models validate the same fields).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator

from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT, FANOUT_PLACEHOLDER, MAX_FANOUT_ITEMS
from swarm.domain import fanout
from swarm.tools.arguments import Arguments, NonBlank
from swarm.tools.base import tool_schema

CREATE_SUBAGENT_SCHEMA = tool_schema(
    CREATE_SUBAGENT,
    "Create a custom subagent with specific system prompt and name for reuse.",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Unique name of this agent configuration"},
            "system_prompt": {
                "type": "string",
                "description": "System prompt defining the agent's role, capabilities, and boundaries",
            },
        },
        "required": ["name", "system_prompt"],
    },
)

ASSIGN_TASK_SCHEMA = tool_schema(
    ASSIGN_TASK,
    "Launch a new instance of a created subagent on a task. Several assign_task calls in one turn "
    "run in parallel; each returns the subagent's single final message.",
    {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "description": "Which created agent to use"},
            "prompt": {"type": "string", "description": "The task for the agent to perform"},
        },
        "required": ["agent", "prompt"],
    },
)

ORCHESTRATION_SCHEMAS = [CREATE_SUBAGENT_SCHEMA, ASSIGN_TASK_SCHEMA]

#: Template fan-out (SWARM_TOOL_ASSIGN_TASKS=true; off by default so Kimi's two tools stay exact).
ASSIGN_TASKS_SCHEMA = tool_schema(
    ASSIGN_TASKS,
    f"Launch one instance of a created subagent per item, in parallel: each gets prompt_template with "
    f"{FANOUT_PLACEHOLDER} replaced by its item. Returns every subagent's final message, in item order. "
    f"At most {MAX_FANOUT_ITEMS} items; the prompts must be distinct.",
    {
        "type": "object",
        "properties": {
            "agent": {"type": "string", "description": "Which created agent to use"},
            "prompt_template": {
                "type": "string",
                "description": f"The task for each agent, with {FANOUT_PLACEHOLDER} where its item goes",
            },
            "items": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": MAX_FANOUT_ITEMS,
                "description": "One item per subagent",
            },
        },
        "required": ["agent", "prompt_template", "items"],
    },
)

_NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")


def _agent_name(name: str) -> str:
    # Python's re, as always: pydantic's pattern= (Rust regex) reads "$" differently.
    if not _NAME.match(name):
        raise ValueError("not a usable agent name")
    return name


class CreateSubagentArgs(Arguments):
    name: Annotated[str, AfterValidator(_agent_name)]
    system_prompt: NonBlank

    problems = {
        "name": "create_subagent needs 'name': 1-64 letters, digits, spaces, '_', '-' or '.'. Got {value!r}.",
        "system_prompt": "create_subagent needs a non-empty 'system_prompt' string.",
    }


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


class AssignTaskArgs(Arguments):
    agent: Annotated[str, AfterValidator(_non_empty)]
    prompt: NonBlank

    problems = {
        "agent": "assign_task needs 'agent': the name given to create_subagent.",
        "prompt": "assign_task needs a non-empty 'prompt' string describing the task.",
    }


class AssignTasksArgs(Arguments):
    agent: Annotated[str, AfterValidator(_non_empty)]
    prompt_template: NonBlank

    problems = {
        "agent": "assign_tasks needs 'agent': the name given to create_subagent.",
        "prompt_template": f"assign_tasks needs a non-empty 'prompt_template' string with {FANOUT_PLACEHOLDER} in it.",
    }


def check_create_subagent(args: dict[str, Any]) -> str | None:
    """An error message for the model, or None when the arguments are usable."""
    parsed = CreateSubagentArgs.parse(args)
    return None if isinstance(parsed, CreateSubagentArgs) else parsed


def check_assign_task(args: dict[str, Any]) -> str | None:
    parsed = AssignTaskArgs.parse(args)
    return None if isinstance(parsed, AssignTaskArgs) else parsed


def check_assign_tasks(args: dict[str, Any]) -> str | None:
    parsed = AssignTasksArgs.parse(args)
    if not isinstance(parsed, AssignTasksArgs):
        return parsed
    prompts = fanout.expand(parsed.prompt_template, args.get("items"))
    return prompts if isinstance(prompts, str) else None
