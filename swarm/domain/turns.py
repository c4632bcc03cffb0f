"""What an assistant turn means: pure decisions over one model response.

The store applies a :class:`TurnPlan` in one transaction; nothing here touches I/O. The checks of
the orchestration tools' arguments are passed in (``checks``): their argument models live with
the tools (``swarm.engine.orchestration``), above this layer; ``swarm.engine.planner`` binds them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS
from swarm.domain import fanout, prompts, sanitize
from swarm.domain.llm import LLMResponse

#: A tool's argument check: an error message for the model, or None when the arguments are usable.
Check = Callable[[dict[str, Any]], str | None]


class TurnKind(StrEnum):
    TOOLS = "tools"  # run the tool calls, then ask the model again
    FINAL = "final"  # the agent's answer
    NUDGE = "nudge"  # empty reply: tell the model and ask again
    STEP_LIMIT = "step_limit"  # wanted more tools on its last allowed step


@dataclass(frozen=True)
class PlannedCall:
    idx: int
    call_id: str
    name: str
    arguments: str
    args: dict[str, Any] | None
    #: Set when the call is refused before running; it goes back to the model as a tool error.
    error: str | None

    @property
    def spawns(self) -> int:
        """Subagents the call launches if it runs: 1 for assign_task, one per item for assign_tasks."""
        if self.error is not None or self.args is None:
            return 0
        if self.name == ASSIGN_TASK:
            return 1
        return fanout.spawns(self.args.get("items")) if self.name == ASSIGN_TASKS else 0

    @property
    def launches_subagent(self) -> bool:
        return self.spawns > 0


@dataclass(frozen=True)
class TurnPlan:
    kind: TurnKind
    calls: tuple[PlannedCall, ...] = ()
    final_text: str | None = None


def parse_arguments(name: str, raw: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a tool call's JSON arguments; an empty string means no arguments."""
    if not raw.strip():
        return {}, None
    value, problem = sanitize.load_arguments(raw)
    if problem == "size":
        return None, prompts.ARGUMENTS_TOO_LARGE.format(name=name, size=len(raw), limit=sanitize.MAX_ARGUMENT_CHARS)
    if problem == "depth":
        return None, prompts.ARGUMENTS_TOO_DEEP.format(name=name, limit=sanitize.MAX_ARGUMENT_DEPTH)
    if problem is not None:
        return None, prompts.BAD_JSON.format(name=name, error=problem)
    if not isinstance(value, dict):
        return None, prompts.NOT_AN_OBJECT.format(name=name, kind=type(value).__name__)
    return value, None


def plan_call(
    idx: int, call_id: str, name: str, raw: str, available: Collection[str], checks: Mapping[str, Check] | None = None
) -> PlannedCall:
    if name not in available:
        unknown = prompts.UNKNOWN_TOOL.format(name=name, available=", ".join(sorted(available)))
        return PlannedCall(idx, call_id, name, raw, None, unknown)
    args, err = parse_arguments(name, raw)
    check = (checks or {}).get(name)
    if args is not None and check is not None:
        err = check(args)
    return PlannedCall(idx, call_id, name, raw, args, err)


def plan_turn(
    response: LLMResponse, available: Collection[str], *, last_step: bool, checks: Mapping[str, Check] | None = None
) -> TurnPlan:
    """Decide what the model's reply asks for. ``available`` names the tools this agent has;
    ``checks`` validates the arguments of the tools named (a refusal becomes the call's error)."""
    text = (response.content or "").strip()
    if last_step and (response.tool_calls or not text):
        return TurnPlan(TurnKind.STEP_LIMIT)
    if response.tool_calls:
        calls = tuple(
            plan_call(i, tc.id or f"call_{i}", tc.name, tc.arguments, available, checks)
            for i, tc in enumerate(response.tool_calls)
        )
        return TurnPlan(TurnKind.TOOLS, calls)
    if not text:
        return TurnPlan(TurnKind.NUDGE)
    return TurnPlan(TurnKind.FINAL, final_text=response.content)
