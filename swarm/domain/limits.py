"""Budget decisions: pure functions over counters the store reads under the run row's lock."""

from __future__ import annotations

from dataclasses import dataclass

from swarm.constants import BUDGET_WARNING_FRACTION
from swarm.domain import prompts


@dataclass(frozen=True)
class Grant:
    """How many of the requested tool calls / subagent launches a turn may start."""

    tool_calls: int
    subagents: int


def grant(
    requested_tools: int,
    requested_subagents: int,
    *,
    used_tools: int,
    max_tools: int,
    used_subagents: int,
    max_subagents: int,
) -> Grant:
    """Grant calls in order until a budget runs out; never overshoot.

    ``requested_subagents`` is included in ``requested_tools`` (an assign_task is a tool call).
    """
    tools_left = max(0, max_tools - used_tools)
    subs_left = max(0, max_subagents - used_subagents)
    return Grant(tool_calls=min(requested_tools, tools_left), subagents=min(requested_subagents, subs_left))


def budget_note(used: int, limit: int, what: str) -> str | None:
    """A warning for the model once a budget is nearly spent, else None."""
    left = limit - used
    if limit > 0 and left <= max(1, int(limit * BUDGET_WARNING_FRACTION)):
        return prompts.BUDGET_NOTE.format(left=left, limit=limit, what=what)
    return None


def over_budget_message(what: str, limit: int) -> str:
    return prompts.OVER_BUDGET.format(limit=limit, what=what)
