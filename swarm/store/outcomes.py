"""How an outcome travels up: a step closes, a tool result is delivered (fan-in schedules the
agent's next turn), an agent ends (its parent's assign_task gets the result), a run ends (its open
work is cancelled). Shared by turn commits, leases, subagent launches and the run lifecycle; each
function runs inside its caller's transaction.

Every status change here is a named transition of ``swarm.domain.status``, guarded in SQL by
:func:`swarm.store.statements.guard`. Matching 0 rows is an expected race at each of them (the
fence moved on, the agent or run already ended), so none of them raises InvalidTransition.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, select, update

from swarm.domain import fanout, prompts
from swarm.domain.critical import AgentSteps, critical_steps, total_steps
from swarm.domain.events import EventType
from swarm.domain.status import (
    AGENT_CANCEL,
    AGENT_ENDS,
    AGENT_FAIL,
    RUN_ENDS,
    STEP_CANCEL,
    STEP_DELIVER,
    STEP_FAIL,
    STEP_SUCCEED,
    STEP_WAIT,
    AgentStatus,
    RunStatus,
    StepStatus,
    Transition,
)
from swarm.exceptions import FenceLost
from swarm.store import statements as sql
from swarm.store import step_stats, writes
from swarm.store.statements import guard
from swarm.store.tables import AGENTS, RUNS, STEPS
from swarm.store.types import Claim, StepRef

#: How a claimed step closes, by the status it closes in.
CLOSES: dict[StepStatus, Transition[StepStatus]] = {t.target: t for t in (STEP_SUCCEED, STEP_FAIL, STEP_WAIT)}


#: What an LLM step's close records of its call.
USAGE = frozenset({"tokens_in", "tokens_out", "tokens_cached", "tokens_reasoning", "cost_pico"})


def close_step(conn: Connection, claim: Claim, status: StepStatus, **values: Any) -> None:
    """Close a claimed step, guarded by its fence; raises FenceLost if it was taken over or cancelled."""
    if status == StepStatus.SUCCEEDED and set(values) <= USAGE:
        # The per-LLM-step case, as a prebuilt statement.
        n = conn.execute(
            sql.CLOSE_STEP,
            {
                "b_id": claim.step_id,
                "b_fence": claim.fence,
                "b_status": status,
                "b_now": time.time(),
                "b_tin": values.get("tokens_in", 0),
                "b_tout": values.get("tokens_out", 0),
                "b_tcached": values.get("tokens_cached"),
                "b_treason": values.get("tokens_reasoning"),
                "b_cost": values.get("cost_pico"),
            },
        ).rowcount
    else:
        move = CLOSES[status]
        if status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            values["finished_at"] = time.time()
        n = conn.execute(
            update(STEPS)
            .where(STEPS.c.id == claim.step_id, STEPS.c.fence == claim.fence, guard(STEPS.c.status, move))
            .values(status=move.target, **values)
        ).rowcount
    if n != 1:
        raise FenceLost(f"step {claim.step_id} was taken over or cancelled; result discarded")


def deliver(
    conn: Connection,
    step_id: str,
    content: str,
    is_error: bool,
    expected: StepStatus,
    fence: int | None,
    images: list[dict[str, Any]] | None = None,
) -> list[StepRef]:
    """Give a tool step its result: the tool message (with ``images`` for the model: records of
    ``domain.images.Picture``), and — when it was the turn's last outstanding call — the agent's
    next LLM step (fan-in). ``expected`` is the status the step is known to be in (checked in SQL,
    with ``fence`` if given)."""
    STEP_DELIVER.check(expected, f"step {step_id}")
    row = conn.execute(
        sql.DELIVER,
        {
            "b_id": step_id,
            "b_expected": expected,
            "b_fence": fence,
            "b_result": content,
            "b_error": is_error,
            "b_now": time.time(),
        },
    ).first()
    if row is None:
        raise FenceLost(f"step {step_id} was taken over or cancelled; result discarded")
    writes.message(
        conn,
        row.run_id,
        row.agent_id,
        row.msg_seq,
        "tool",
        writes.with_note(content, row.note),
        tool_call_id=row.tool_call_id,
        images=images,
    )
    left = conn.execute(sql.FAN_IN, {"b_id": row.agent_id}).first()
    if left is not None and left.pending_tools == 0:
        return [writes.new_llm_step(conn, row.run_id, row.agent_id, row.turn + 1)]
    return []


def finish_agent(
    conn: Connection, agent_id: str, status: AgentStatus, result: str | None, reason: str | None
) -> list[StepRef]:
    """End a running agent: a root agent ends its run; a subagent's result (or failure, as a
    tool error) goes to the assign_task step waiting for it. Nothing if it had already ended."""
    move = AGENT_ENDS[status]
    agent = conn.execute(
        update(AGENTS)
        .where(AGENTS.c.id == agent_id, guard(AGENTS.c.status, move))
        .values(status=move.target, result=result, reason=reason, finished_at=time.time())
        .returning(AGENTS.c.run_id, AGENTS.c.parent_step_id, AGENTS.c.name, AGENTS.c.item)
    ).first()
    if agent is None:
        return []
    writes.event(conn, agent.run_id, EventType.AGENT_DONE, agent_id, None, {"status": status.value, "reason": reason})
    if agent.parent_step_id is None:
        run_status = RunStatus.SUCCEEDED if status == AgentStatus.SUCCEEDED else RunStatus.FAILED
        finish_run(conn, agent.run_id, run_status, result, reason)
        return []
    if agent.item is not None:
        failed = (
            None if status == AgentStatus.SUCCEEDED else prompts.SUBAGENT_FAILED.format(name=agent.name, reason=reason)
        )
        return fanout_child_done(conn, agent_id, agent.parent_step_id, failed)
    if status == AgentStatus.SUCCEEDED:
        return deliver(conn, agent.parent_step_id, result or "", False, StepStatus.WAITING, None)
    text = prompts.SUBAGENT_FAILED.format(name=agent.name, reason=reason)
    try:
        return deliver(conn, agent.parent_step_id, text, True, StepStatus.WAITING, None)
    except FenceLost:
        return []  # the parent is gone (cancelled): nobody to tell


def fanout_child_done(conn: Connection, agent_id: str, step_id: str, failed: str | None) -> list[StepRef]:
    """One subagent of an assign_tasks step reported (``failed``: why it failed, as its answer).
    Its answer is kept on its row (``result`` set: it has reported, so a resume does not re-open
    it); the step's counter goes down by one, and the commit that brings it to 0 delivers every
    answer in item order. Each agent ends once (a guarded transition), so it counts once."""
    if failed is not None:
        conn.execute(update(AGENTS).where(AGENTS.c.id == agent_id).values(result=failed))
    left = conn.execute(
        update(STEPS)
        .where(STEPS.c.id == step_id, STEPS.c.status == StepStatus.WAITING)
        .values(pending_children=STEPS.c.pending_children - 1)
        .returning(STEPS.c.pending_children, STEPS.c.arguments)
    ).first()
    if left is None or left.pending_children != 0:
        return []  # others still to come, or the step is gone (cancelled): nobody to tell yet
    children = conn.execute(
        select(AGENTS.c.status, AGENTS.c.result).where(AGENTS.c.parent_step_id == step_id).order_by(AGENTS.c.item)
    ).all()
    answers = [fanout.Answer(c.status == AgentStatus.SUCCEEDED, c.result or "") for c in children]
    items = [fanout.item_text(i) or "" for i in json.loads(left.arguments or "{}").get("items", [])]
    text = fanout.combine(items, answers)
    return deliver(conn, step_id, text, not any(a.ok for a in answers), StepStatus.WAITING, None)


def finish_run(conn: Connection, run_id: str, status: RunStatus, result: str | None, reason: str | None) -> None:
    """End a running run; unless it succeeded, its open steps and running agents end with it.
    Nothing if it had already ended. The caller holds the run's lock."""
    move = RUN_ENDS[status]
    agents = [
        AgentSteps(a.id, a.parent_id, a.parent_turn, a.steps)
        for a in conn.execute(
            select(AGENTS.c.id, AGENTS.c.parent_id, AGENTS.c.parent_turn, AGENTS.c.steps).where(
                AGENTS.c.run_id == run_id
            )
        )
    ]
    n = conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, guard(RUNS.c.status, move))
        .values(
            status=move.target,
            result=result,
            reason=reason,
            finished_at=time.time(),
            critical_steps=critical_steps(agents),
            total_steps=total_steps(agents),
        )
    ).rowcount
    if not n:
        return
    if status != RunStatus.SUCCEEDED:
        # Steps, agents, then steps again. Every commit in flight on this run holds its own
        # step's row lock, so the first UPDATE waits for each of them to commit (or to find
        # its step cancelled, if we got there first). What they created meanwhile (a child
        # agent, the next step of a fan-in) is invisible to that statement's snapshot but not
        # to the later statements' (READ COMMITTED): without them it stayed RUNNING / READY
        # in a cancelled run, and a resume would have run it next to the step it creates.
        cancel_steps = (
            update(STEPS)
            .where(STEPS.c.run_id == run_id, guard(STEPS.c.status, STEP_CANCEL))
            .values(status=STEP_CANCEL.target, owner=None, error=reason)
        )
        conn.execute(cancel_steps)
        agent_move = AGENT_CANCEL if status == RunStatus.CANCELLED else AGENT_FAIL
        conn.execute(
            update(AGENTS)
            .where(AGENTS.c.run_id == run_id, guard(AGENTS.c.status, agent_move))
            .values(status=agent_move.target, reason=reason, finished_at=time.time())
        )
        conn.execute(cancel_steps)
    step_stats.count_run(conn, run_id, 1)  # its steps no longer change: /metrics' totals take them
    writes.event(conn, run_id, EventType.RUN_DONE, None, None, {"status": status.value, "reason": reason})
