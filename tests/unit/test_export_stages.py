"""Per-stage critical-step annotations add up to Kimi's Critical Steps."""

from __future__ import annotations

from swarm.domain.critical import AgentSteps, critical_steps
from swarm.store.export import stages


def test_w1_shape():
    # Orchestrator: turn 0 creates, turn 1 launches 3 subagents (the longest takes 6 steps), turn 2 answers.
    agents = [AgentSteps("o", None, None, 3)] + [AgentSteps(f"s{i}", "o", 1, n) for i, n in enumerate((4, 6, 5))]
    st = stages(agents)
    assert [(s.turn, s.critical_steps) for s in st] == [(0, 1), (1, 7), (2, 1)]
    assert st[1].longest_subagent == "s1" and set(st[1].subagents) == {"s0", "s1", "s2"}
    assert sum(s.critical_steps for s in st if s.agent_id == "o") == critical_steps(agents) == 9


def test_nested_swarms_count_the_inner_critical_path():
    agents = [
        AgentSteps("o", None, None, 2),
        AgentSteps("a", "o", 0, 3),
        AgentSteps("b", "o", 0, 1),
        AgentSteps("a1", "a", 1, 4),
        AgentSteps("a2", "a", 2, 2),
    ]
    st = stages(agents)
    root = [s for s in st if s.agent_id == "o"]
    assert sum(s.critical_steps for s in root) == critical_steps(agents) == 2 + (3 + 4 + 2)
    # The inner orchestrator gets its own stages too.
    assert [(s.turn, s.critical_steps) for s in st if s.agent_id == "a"] == [(0, 1), (1, 5), (2, 3)]
    assert not [s for s in st if s.agent_id in ("b", "a1", "a2")]
