"""The turn planner as the engine runs it: :func:`swarm.domain.turns.plan_turn` with the
orchestration tools' argument checks (their pydantic models live with the tools)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT
from swarm.domain import turns
from swarm.domain.llm import LLMResponse
from swarm.engine import orchestration

#: The argument checks the planner applies before a call is run (a refusal goes back to the model).
CHECKS: Mapping[str, turns.Check] = {
    CREATE_SUBAGENT: orchestration.check_create_subagent,
    ASSIGN_TASK: orchestration.check_assign_task,
    ASSIGN_TASKS: orchestration.check_assign_tasks,
}


def plan_turn(response: LLMResponse, available: Collection[str], *, last_step: bool) -> turns.TurnPlan:
    """Decide what the model's reply asks for (see :func:`swarm.domain.turns.plan_turn`)."""
    return turns.plan_turn(response, available, last_step=last_step, checks=CHECKS)
