"""What a fork of a run keeps: a pure decision over the origin's steps, agents, messages and events.

``swarm fork RUN --at STEP`` makes a new run that carries the origin's committed history up to the
fork point and goes on from there. The fork point is a step S of any agent A.

**The cut.** Every commit writes its events in the same transaction, so the events table orders
commits: the cut ``E`` is the first event of S's own commit (its ``llm_done`` or ``tool_done``, the
``agent_started`` of the subagents it launched, its ``step_failed``, and A's ``agent_done`` when S
ended A); a step S that never committed cuts after everything committed. The fork holds exactly
what was committed before ``E``:

* an LLM step whose ``llm_done`` is before E (its reply, its tool calls and their budget);
* a tool call whose result was delivered before E (``tool_done``; an ``assign_task`` when its
  subagent's ``agent_done`` is; an ``assign_tasks`` when all its subagents' are; a call refused when
  its turn was committed, with its turn);
* a subagent whose ``agent_started`` is before E, ended if its ``agent_done`` is.

The state is then rebuilt structurally, so an event id out of commit order (two concurrent commits
on PostgreSQL) cannot make it inconsistent: a tool call of an agent's last kept turn that was not
delivered runs again (``READY``), or waits again for the subagents it launched before E
(``WAITING``); the agent's next LLM step is ready only when every call of its last turn was
delivered. S itself is ready: an LLM step S is asked again, reading A's messages up to it (the last
of them replaced by ``--message``); a tool step S runs again. No model call committed before E is
ever sent again: it is kept, not re-run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from swarm.constants import LAUNCH_TOOLS
from swarm.domain.events import EventType
from swarm.domain.status import STEP_TERMINAL, StepKind, StepStatus
from swarm.exceptions import InputError

#: Later than every event.
_NEVER = math.inf
#: The events a step's own commit writes with its id.
_OWN = frozenset(
    {
        EventType.LLM_DONE,
        EventType.TOOL_DONE,
        EventType.STEP_FAILED,
        EventType.AGENT_STARTED,
        EventType.SUBAGENT_DEFINED,
    }
)


class Fate(StrEnum):
    KEEP = "keep"  #: copied as it is (committed before the cut)
    READY = "ready"  #: runs again in the fork
    WAITING = "waiting"  #: a launch kept, waiting for its subagents (some still to report)


@dataclass(frozen=True)
class AgentPlan:
    ended: bool
    #: LLM calls of the agent kept (its ``steps``).
    llm_turns: int
    pending_tools: int
    next_seq: int


@dataclass
class ForkPlan:
    #: The id of the first event not copied.
    cut: float
    agents: dict[str, AgentPlan] = field(default_factory=dict)
    steps: dict[str, Fate] = field(default_factory=dict)
    #: assign_tasks steps kept waiting: their subagents still to report.
    pending_children: dict[str, int] = field(default_factory=dict)
    #: (agent id, seq) of the messages kept.
    messages: set[tuple[str, int]] = field(default_factory=set)
    #: The message --message replaces: the last one the fork step's agent reads.
    replaced: tuple[str, int] | None = None
    #: Names of the subagent types defined before the cut.
    defs: set[str] = field(default_factory=set)


@dataclass
class _Events:
    by_step: dict[str, float] = field(default_factory=dict)  #: first event of a step's own commit
    llm_done: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  #: agent id → agent_started
    done: dict[str, float] = field(default_factory=dict)  #: agent id → agent_done
    defined: dict[str, float] = field(default_factory=dict)  #: name → subagent_defined
    last: float = 0

    @classmethod
    def read(cls, events: Iterable[Any]) -> _Events:
        out = cls()
        for e in events:
            out.last = max(out.last, e.id)
            if e.type == EventType.LLM_DONE and e.step_id:
                out.llm_done.setdefault(e.step_id, e.id)
            if e.step_id and e.type in _OWN:
                out.by_step[e.step_id] = min(out.by_step.get(e.step_id, _NEVER), e.id)
            if e.type == EventType.AGENT_STARTED and e.agent_id:
                out.started.setdefault(e.agent_id, e.id)
            elif e.type == EventType.AGENT_DONE and e.agent_id:
                out.done.setdefault(e.agent_id, e.id)
            elif e.type == EventType.SUBAGENT_DEFINED and isinstance(e.data, dict):
                out.defined.setdefault(str(e.data.get("name")), e.id)
        return out


def plan_fork(
    at: Any, steps: Sequence[Any], agents: Sequence[Any], messages: Sequence[Any], events: Iterable[Any]
) -> ForkPlan:
    """What the fork at step ``at`` keeps of a run. ``steps``, ``agents``, ``messages`` (agent_id,
    seq, role) and ``events`` (id, type, agent_id, step_id, data) are all the origin's rows."""
    ev = _Events.read(events)
    by_agent: dict[str, list[Any]] = defaultdict(list)
    for s in steps:
        by_agent[s.agent_id].append(s)
    children: dict[str, list[Any]] = defaultdict(list)
    for a in agents:
        if a.parent_step_id:
            children[a.parent_step_id].append(a)
    cut = _cut(at, by_agent[at.agent_id], ev)
    # A launch is one commit: its subagents are all in the fork or none (ids of concurrent commits interleave).
    launched = {sid for sid, kids in children.items() if any(ev.started.get(k.id, _NEVER) < cut for k in kids)}
    plan = ForkPlan(cut=cut, defs={name for name, i in ev.defined.items() if i < cut})
    msgs: dict[str, list[Any]] = defaultdict(list)
    for m in messages:
        msgs[m.agent_id].append(m)

    for a in agents:
        if a.parent_step_id is not None and a.parent_step_id not in launched:
            continue  # launched after the cut: its launch runs again in the fork
        mine = by_agent[a.id]
        llm = sorted((s for s in mine if s.kind == StepKind.LLM), key=lambda s: s.turn)
        if a.id == at.agent_id and at.kind == StepKind.LLM:
            last = at.turn - 1
        else:
            kept = [s.turn for s in llm if ev.llm_done.get(s.id, _NEVER) < cut]
            last = max(kept, default=-1)
        ended = a.id != at.agent_id and ev.done.get(a.id, _NEVER) < cut
        if ended:  # everything of an ended agent came before its end (a call it left open is moot)
            plan.steps.update((s.id, Fate.KEEP) for s in mine if s.status in STEP_TERMINAL)
        pending = 0
        reserved = 1
        if not ended:
            for s in mine:
                if s.turn < last or (s.kind == StepKind.LLM and s.turn == last):
                    plan.steps[s.id] = Fate.KEEP
                elif s.kind == StepKind.TOOL and s.turn == last:
                    fate, left = _tool_fate(s, children.get(s.id, []), s.id in launched, ev, cut, at)
                    plan.steps[s.id] = fate
                    reserved = max(reserved, (s.msg_seq or 0))
                    if fate != Fate.KEEP:
                        pending += 1
                    if fate == Fate.WAITING and left is not None:
                        plan.pending_children[s.id] = left
            if pending == 0:
                nxt = next((s for s in llm if s.turn == last + 1), None)
                if nxt is not None:
                    plan.steps[nxt.id] = Fate.READY
        kept_seqs = _messages(msgs[a.id], last if not ended else len(llm), mine, plan.steps)
        plan.messages.update((a.id, seq) for seq in kept_seqs)
        if a.id == at.agent_id and at.kind == StepKind.LLM and kept_seqs:
            plan.replaced = (a.id, max(kept_seqs))
        turns = sum(1 for s in llm if plan.steps.get(s.id) == Fate.KEEP and s.status == StepStatus.SUCCEEDED)
        plan.agents[a.id] = AgentPlan(ended, turns, pending, max([reserved, *kept_seqs]) + 1)
    plan.steps[at.id] = Fate.READY
    return plan


def _cut(at: Any, mine: Sequence[Any], ev: _Events) -> float:
    first = ev.by_step.get(at.id, _NEVER)
    if first == _NEVER and at.kind == StepKind.TOOL and at.status == StepStatus.SUCCEEDED:
        # Answered without a commit of its own (refused when its turn was committed): there is no
        # point in the run's history between that answer and its turn to go on from.
        raise InputError(
            f"step {at.id} was answered without running (refused when its turn was committed): fork at "
            "the model call before it, or at the one after it"
        )
    ended_by_it = all(s.turn < at.turn or s.id == at.id for s in mine if s.kind == StepKind.LLM or s.turn > at.turn)
    if ended_by_it and at.agent_id in ev.done and first < _NEVER:
        first = min(first, ev.done[at.agent_id])  # its commit ended its agent: that event comes first
    return first if first < _NEVER else ev.last + 1


def _tool_fate(
    s: Any, kids: Sequence[Any], launched: bool, ev: _Events, cut: float, at: Any
) -> tuple[Fate, int | None]:
    """A tool call of an agent's last kept turn: delivered before the cut, waiting for subagents
    launched before it, or to run again (with its subagents still to report, for an assign_tasks)."""
    if s.id == at.id:
        return Fate.READY, None
    if s.tool_name in LAUNCH_TOOLS and kids:
        if not launched:
            return Fate.READY, None
        left = sum(1 for k in kids if ev.done.get(k.id, _NEVER) >= cut)
        if left == 0:
            return Fate.KEEP, None
        return Fate.WAITING, left if s.pending_children is not None else None
    own = ev.by_step.get(s.id)
    if own is not None:
        return (Fate.KEEP if own < cut else Fate.READY), None
    # No event of its own: refused when its turn was committed (kept with the turn), or never ran.
    closed = s.status in STEP_TERMINAL and s.attempt == 0
    return (Fate.KEEP if closed and s.status == StepStatus.SUCCEEDED else Fate.READY), None


def _messages(rows: Sequence[Any], last: int, steps: Sequence[Any], fates: dict[str, Fate]) -> list[int]:
    """The seqs of an agent's messages the fork keeps: its two prompts, the replies of its kept
    turns (each with the nudge that followed an empty one) and the results of its kept tool calls."""
    kept_results = {s.msg_seq for s in steps if s.kind == StepKind.TOOL and fates.get(s.id) == Fate.KEEP}
    out, replies, previous = [], -1, ""
    for m in sorted(rows, key=lambda m: m.seq):
        if m.seq < 2:
            keep = True
        elif m.role == "assistant":
            replies += 1
            keep = replies <= last
        elif m.role == "tool":
            keep = m.seq in kept_results
        else:  # a nudge, after the reply it answers
            keep = previous == "assistant" and replies <= last
        if keep:
            out.append(m.seq)
        previous = m.role
    return out
