"""What a fork keeps (swarm/domain/fork.py), as pure decisions over hand-made rows: the cut is the
first event of the fork step's own commit, a launch is all or nothing, the fork step runs again,
and a step answered without a commit of its own is no fork point."""

from __future__ import annotations

from types import SimpleNamespace as Row

import pytest

from swarm.domain.fork import Fate, plan_fork
from swarm.exceptions import InputError


def step(id, agent, kind, turn, idx=0, *, status="succeeded", tool=None, msg_seq=None, attempt=1, pending=None):
    return Row(
        id=id,
        agent_id=agent,
        kind=kind,
        turn=turn,
        idx=idx,
        status=status,
        tool_name=tool,
        msg_seq=msg_seq,
        attempt=attempt,
        pending_children=pending,
    )


def agent(id, parent_step=None):
    return Row(id=id, parent_step_id=parent_step)


def msg(agent_id, seq, role):
    return Row(agent_id=agent_id, seq=seq, role=role)


def event(id, type, agent_id=None, step_id=None, data=None):
    return Row(id=id, type=type, agent_id=agent_id, step_id=step_id, data=data)


# An orchestrator O: turn 0 launches two subagents with one assign_tasks call (step L); each
# subagent answers in one turn; O's turn 1 summarises.
STEPS = [
    step("o0", "O", "llm", 0),
    step("L", "O", "tool", 0, tool="assign_tasks", msg_seq=3, pending=0),
    step("a0", "A", "llm", 0),
    step("b0", "B", "llm", 0),
    step("o1", "O", "llm", 1),
]
AGENTS = [agent("O"), agent("A", "L"), agent("B", "L")]
MESSAGES = [
    msg("O", 0, "system"),
    msg("O", 1, "user"),
    msg("O", 2, "assistant"),
    msg("O", 3, "tool"),
    msg("O", 4, "assistant"),
]
MESSAGES += [msg(a, s, r) for a in "AB" for s, r in ((0, "system"), (1, "user"), (2, "assistant"))]
EVENTS = [
    event(1, "run_created"),
    event(2, "llm_done", "O", "o0"),
    event(3, "agent_started", "A", "L"),
    event(5, "agent_started", "B", "L"),  # a concurrent commit's event (4) came between
    event(4, "llm_done", "X", "x"),
    event(6, "agent_done", "A"),
    event(7, "llm_done", "A", "a0"),
    event(8, "agent_done", "B"),
    event(9, "llm_done", "B", "b0"),
    event(10, "agent_done", "O"),
    event(11, "llm_done", "O", "o1"),
]


def test_a_fork_at_a_subagents_final_call_waits_for_it_with_its_sibling_kept() -> None:
    plan = plan_fork(STEPS[2], STEPS, AGENTS, MESSAGES, EVENTS)
    assert plan.cut == 6  # A's end is the first event of a0's commit
    assert plan.steps == {"o0": Fate.KEEP, "L": Fate.WAITING, "a0": Fate.READY, "b0": Fate.READY}
    assert plan.pending_children == {"L": 2}
    assert plan.agents["O"].pending_tools == 1 and plan.agents["O"].next_seq == 4
    assert plan.replaced == ("A", 1)  # A's prompt: what --message replaces
    assert ("O", 3) not in plan.messages and ("O", 2) in plan.messages


def test_a_launch_is_all_or_nothing_and_answers_before_the_cut_are_kept() -> None:
    plan = plan_fork(STEPS[4], STEPS, AGENTS, MESSAGES, EVENTS)
    assert plan.cut == 10
    assert plan.steps["L"] == Fate.KEEP and plan.steps["o1"] == Fate.READY
    assert plan.agents["A"].ended and plan.agents["B"].ended
    assert ("O", 3) in plan.messages and ("O", 4) not in plan.messages
    early = plan_fork(STEPS[0], STEPS, AGENTS, MESSAGES, EVENTS)  # the first call: only the prompts
    assert early.steps == {"o0": Fate.READY} and early.messages == {("O", 0), ("O", 1)}
    assert set(early.agents) == {"O"}


def test_a_step_answered_without_running_is_no_fork_point() -> None:
    refused = step("r", "O", "tool", 0, 1, tool="echo", msg_seq=4, attempt=0)
    with pytest.raises(InputError, match="answered without running"):
        plan_fork(refused, [*STEPS, refused], AGENTS, MESSAGES, EVENTS)
