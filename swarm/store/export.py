"""Trajectory export: a run as JSON Lines, for evaluation and as training data.

Record order (every record has a ``type``):

1. ``run`` — the header: the run summary (the CLI's ``--json`` fields) plus format metadata;
2. ``agent`` — one per agent, parents before children: its place in the tree, its messages in
   OpenAI chat format (with ``reasoning_content``) and its steps (LLM and tool calls) with
   timings, tokens, attempts and results;
3. ``stage`` — one per turn of every agent that launched subagents: its own step plus the
   longest subagent launched in that turn. The root's stages sum to the run's critical steps,
   which is what Kimi's Critical Steps metric (and its PARL reward) is computed from.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import select

from swarm.domain import pricing
from swarm.domain.critical import AgentSteps
from swarm.store.session import Session
from swarm.store.tables import AGENTS, MESSAGES, STEPS
from swarm.store.views import Views

FORMAT = "swarm.trajectory.v1"


@dataclass(frozen=True)
class Stage:
    """One turn of an agent: ``main_steps`` (its own LLM call) + the longest subagent launched in it."""

    agent_id: str
    turn: int
    main_steps: int
    subagents: tuple[str, ...]
    longest_subagent: str | None
    longest_subagent_steps: int

    @property
    def critical_steps(self) -> int:
        return self.main_steps + self.longest_subagent_steps


def stages(agents: Iterable[AgentSteps]) -> list[Stage]:
    """Every turn of every agent that launched subagents, plus every turn of the root agent(s).

    Mirrors :func:`swarm.domain.critical.critical_steps`, so the root's stages add up to it.
    """
    agents = list(agents)
    by_id = {a.id: a for a in agents}
    children: dict[str, dict[int, list[AgentSteps]]] = defaultdict(lambda: defaultdict(list))
    for a in agents:
        if a.parent_id is not None and a.parent_id in by_id:
            children[a.parent_id][a.parent_turn or 0].append(a)
    memo: dict[str, int] = {}

    def length(agent: AgentSteps) -> int:
        if agent.id not in memo:
            memo[agent.id] = agent.steps + sum(
                max(length(c) for c in kids) for kids in children.get(agent.id, {}).values()
            )
        return memo[agent.id]

    out: list[Stage] = []
    for a in agents:
        launched = children.get(a.id, {})
        if a.parent_id is not None and not launched:
            continue
        # A stage that launched subagents counts even if the agent's step counter lags (a run
        # stopped between the launch and its commit cannot happen, but be exact regardless).
        turns = sorted(set(range(a.steps)) | set(launched))
        for t in turns:
            kids = launched.get(t, [])
            longest = max(kids, key=length) if kids else None
            out.append(
                Stage(
                    a.id,
                    t,
                    1 if t < a.steps else 0,
                    tuple(k.id for k in kids),
                    longest.id if longest else None,
                    length(longest) if longest else 0,
                )
            )
    return out


class Export:
    """A run's trajectory, read through the store's session and views."""

    def __init__(self, session: Session, views: Views) -> None:
        self.session = session
        self.views = views

    def trajectory(self, run_id: str, tenant: str | None = None) -> Iterator[dict[str, Any]]:
        """The run's records in export order. Raises NotFound (before yielding) for an unknown run."""
        return trajectory(self.session, self.views, run_id, tenant)

    def trajectory_jsonl(self, run_id: str, tenant: str | None = None) -> Iterator[str]:
        """:meth:`trajectory` as JSON lines."""
        return (json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in self.trajectory(run_id, tenant))


def trajectory(session: Session, views: Views, run_id: str, tenant: str | None = None) -> Iterator[dict[str, Any]]:
    # Read everything that can fail (unknown run, tenancy) before the first record goes out, so
    # an HTTP handler can still answer 404 instead of a broken stream.
    summary = views.run_summary(run_id, tenant)
    tree = views.agent_tree(run_id, tenant)
    steps_by_agent = _steps(session, run_id)
    return _records(session, run_id, summary.as_dict(), tree, steps_by_agent)


def _records(
    session: Session,
    run_id: str,
    header: dict[str, Any],
    tree: list[dict[str, Any]],
    steps_by_agent: dict[str, list[dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    header.update(
        type="run",
        format=FORMAT,
        exported_at=time.time(),
        agents=len(tree),
        steps=sum(len(v) for v in steps_by_agent.values()),
    )
    yield header
    messages = _messages(session, run_id)
    results = _results(session, run_id)
    for a in tree:
        # "steps" is the list of steps here; the tree's count of LLM steps becomes step_count.
        record = {k: v for k, v in a.items() if k != "steps"}
        yield {
            "type": "agent",
            **record,
            "step_count": a["steps"],
            "result": results.get(a["id"]),
            "messages": messages.get(a["id"], []),
            "steps": steps_by_agent.get(a["id"], []),
        }
    crit_agents = [AgentSteps(a["id"], a["parent_id"], a["parent_turn"], a["steps"]) for a in tree]
    for st in stages(crit_agents):
        yield {
            "type": "stage",
            "agent_id": st.agent_id,
            "turn": st.turn,
            "main_steps": st.main_steps,
            "subagents": list(st.subagents),
            "longest_subagent": st.longest_subagent,
            "longest_subagent_steps": st.longest_subagent_steps,
            "critical_steps": st.critical_steps,
        }


def _messages(session: Session, run_id: str) -> dict[str, list[dict[str, Any]]]:
    with session.read() as conn:
        rows = conn.execute(
            select(
                MESSAGES.c.agent_id,
                MESSAGES.c.seq,
                MESSAGES.c.role,
                MESSAGES.c.content,
                MESSAGES.c.reasoning_content,
                MESSAGES.c.tool_calls,
                MESSAGES.c.tool_call_id,
                MESSAGES.c.created_at,
            )
            .where(MESSAGES.c.run_id == run_id)
            .order_by(MESSAGES.c.agent_id, MESSAGES.c.seq)
        ).all()
    return {agent_id: [_message(r) for r in group] for agent_id, group in groupby(rows, key=lambda r: r.agent_id)}


def _steps(session: Session, run_id: str) -> dict[str, list[dict[str, Any]]]:
    with session.read() as conn:
        rows = conn.execute(
            select(STEPS)
            .where(STEPS.c.run_id == run_id)
            .order_by(STEPS.c.agent_id, STEPS.c.turn, STEPS.c.kind, STEPS.c.idx)
        ).all()
    return {agent_id: [_step(r) for r in group] for agent_id, group in groupby(rows, key=lambda r: r.agent_id)}


def _results(session: Session, run_id: str) -> dict[str, str | None]:
    # agent_tree truncates results for display; the export wants them whole.
    with session.read() as conn:
        rows = conn.execute(select(AGENTS.c.id, AGENTS.c.result).where(AGENTS.c.run_id == run_id)).all()
        return {i: r for i, r in rows}


def _message(r: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"seq": r.seq, "role": r.role, "content": r.content, "created_at": r.created_at}
    if r.reasoning_content:
        m["reasoning_content"] = r.reasoning_content
    if r.tool_calls:
        m["tool_calls"] = r.tool_calls
    if r.tool_call_id:
        m["tool_call_id"] = r.tool_call_id
    return m


def _step(r: Any) -> dict[str, Any]:
    duration = (r.finished_at - r.started_at) if r.finished_at and r.started_at else None
    s: dict[str, Any] = {
        "id": r.id,
        "kind": r.kind,
        "status": r.status,
        "turn": r.turn,
        "idx": r.idx,
        "attempt": r.attempt,
        "ready_at": r.ready_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration": round(duration, 6) if duration is not None else None,
        "tokens_in": r.tokens_in,
        "tokens_out": r.tokens_out,
        "error": r.error,
    }
    if r.kind == "llm":
        s.update(tokens_cached=r.tokens_cached, tokens_reasoning=r.tokens_reasoning, cost_usd=pricing.usd(r.cost_pico))
    if r.kind == "tool":
        s.update(
            tool_name=r.tool_name,
            tool_call_id=r.tool_call_id,
            arguments=r.arguments,
            result=r.result,
            is_error=bool(r.is_error),
            child_agent_id=r.child_agent_id,
        )
    return s
