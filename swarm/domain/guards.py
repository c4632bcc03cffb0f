"""Loop guards: pure decisions over one turn's planned tool calls, applied before the budgets.

* **Repeats.** An agent that runs an identical tool call (same tool, same arguments once
  canonicalised: keys sorted, no whitespace) more than ``max_repeats`` times gets a tool error
  instead of another run. The store supplies how often each identical call already ran for the
  agent (:func:`call_key` is stored on every tool step that was granted a run); calls earlier in
  the same turn count too.
* **Spawns per turn.** Of one turn's ``assign_task`` calls, the first ``max_spawns_per_turn``
  launch subagents; the rest are told to assign their task again in a later turn. An
  ``assign_tasks`` call counts one spawn per item and is refused whole if they do not all fit.

A refused call keeps its place in the turn and becomes a tool error, like a malformed one: the
run goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm.constants import ASSIGN_TASK
from swarm.domain import prompts
from swarm.domain.turns import PlannedCall, TurnPlan


def call_key(name: str, args: Mapping[str, Any]) -> str:
    """The identity of a tool call: sha256 of its tool name and canonical JSON arguments (64 hex)."""
    canonical = json.dumps([name, args], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def planned_key(call: PlannedCall) -> str | None:
    """The key of a call that would run; None for one already refused (it never runs, never counts)."""
    return call_key(call.name, call.args) if call.error is None and call.args is not None else None


@dataclass(frozen=True)
class LoopGuards:
    #: Runs of one identical call an agent may make (SWARM_MAX_REPEATS); the next ones are refused.
    max_repeats: int
    #: Subagents one turn may launch; None: only the run's subagent budget limits them.
    max_spawns_per_turn: int | None = None


def guard_turn(plan: TurnPlan, ran_before: Mapping[str, int], guards: LoopGuards) -> TurnPlan:
    """``plan`` with the calls the guards refuse turned into tool errors, in call order.

    ``ran_before`` maps a :func:`call_key` to how many times the agent already ran that call."""
    seen: Counter[str] = Counter()
    spawns = 0
    calls: list[PlannedCall] = []
    for call in plan.calls:
        error = None
        key = planned_key(call)
        if key is not None:
            if ran_before.get(key, 0) + seen[key] >= guards.max_repeats:
                error = prompts.REPEATED_CALL.format(name=call.name, limit=guards.max_repeats)
            elif call.launches_subagent and guards.max_spawns_per_turn is not None:
                # An assign_tasks call counts one spawn per item, and launches all or none.
                cap = guards.max_spawns_per_turn
                if spawns + call.spawns > cap:
                    error = (
                        prompts.SPAWN_CAP.format(cap=cap)
                        if call.name == ASSIGN_TASK
                        else prompts.FANOUT_SPAWN_CAP.format(
                            cap=cap, count=call.spawns, used=spawns, left=max(0, cap - spawns)
                        )
                    )
                else:
                    spawns += call.spawns
            if error is None:
                seen[key] += 1
        calls.append(call if error is None else dataclasses.replace(call, error=error))
    return dataclasses.replace(plan, calls=tuple(calls))
