"""Kimi's latency metric.

``CriticalSteps = Σ_t ( S_main(t) + max_i S_sub,i(t) )``: for every turn (stage) t of an agent,
its own step plus the longest subagent launched in that stage. Applied recursively, a subagent's
length is its own critical steps, so nested swarms are measured the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentSteps:
    id: str
    parent_id: str | None
    #: The parent's turn in which this agent was launched.
    parent_turn: int | None
    #: LLM calls this agent made.
    steps: int


def critical_steps(agents: Iterable[AgentSteps]) -> int:
    """Critical steps of the tree rooted at the agent without a parent (0 for an empty run)."""
    agents = list(agents)
    children: dict[str, dict[int, list[AgentSteps]]] = defaultdict(lambda: defaultdict(list))
    roots = []
    for a in agents:
        if a.parent_id is None:
            roots.append(a)
        else:
            children[a.parent_id][a.parent_turn or 0].append(a)

    memo: dict[str, int] = {}

    def length(agent: AgentSteps) -> int:
        if agent.id in memo:
            return memo[agent.id]
        stages = children.get(agent.id, {})
        # Turns 0..steps-1 each cost 1; a stage that launched subagents adds its longest one.
        total = agent.steps + sum(max(length(c) for c in kids) for kids in stages.values())
        memo[agent.id] = total
        return total

    return sum(length(r) for r in roots)


def total_steps(agents: Iterable[AgentSteps]) -> int:
    """All LLM steps of the run: what one agent working serially would have had to take."""
    return sum(a.steps for a in agents)
