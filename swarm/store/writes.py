"""Rows every part of the store writes or reads the same way: the run lock, messages, events, a
new LLM step, and step references. Each function runs inside its caller's transaction."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from swarm.domain.events import EventType
from swarm.domain.status import STEP_CLAIM, STEP_OPEN, StepKind, StepStatus
from swarm.exceptions import NotFound
from swarm.store import statements as sql
from swarm.store.session import new_id
from swarm.store.statements import guard
from swarm.store.tables import STEPS
from swarm.store.types import AgentLimits, StepRef

#: The open step statuses, in declaration order.
OPEN = tuple(s for s in StepStatus if s in STEP_OPEN)
#: What a :class:`StepRef` is read from.
REF_COLS = (STEPS.c.id, STEPS.c.run_id, STEPS.c.agent_id, STEPS.c.kind, STEPS.c.tool_name)
#: What giving up a step (``Leases.give_up``) needs of it.
GIVE_UP_COLS = (
    STEPS.c.id,
    STEPS.c.run_id,
    STEPS.c.agent_id,
    STEPS.c.kind,
    STEPS.c.status,
    STEPS.c.fence,
    STEPS.c.attempt,
    STEPS.c.tool_name,
)


def lock_run(conn: Connection, run_id: str) -> Any:
    """The run's row, locked for the rest of the transaction (budgets and status are decided under it)."""
    row = conn.execute(sql.LOCK_RUN, {"b_id": run_id}).first()
    if row is None:
        raise NotFound(f"no run {run_id}")
    return row


def take_turns(conn: Connection, dialect: str, name: str) -> None:
    """Hold a lock named ``name`` until the transaction ends, so writers deciding on the same
    thing take turns: a transaction-scoped advisory lock on PostgreSQL (keyed by a hash of the
    name); SQLite has a single writer already."""
    if dialect == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        conn.execute(select(func.pg_advisory_xact_lock(key)))


def message(
    conn: Connection,
    run_id: str,
    agent_id: str,
    seq: int,
    role: str,
    content: Any,
    *,
    reasoning: str | None = None,
    tool_calls: Any = None,
    tool_call_id: str | None = None,
    images: list[dict[str, Any]] | None = None,
) -> None:
    conn.execute(
        sql.INSERT_MESSAGE,
        {
            "run_id": run_id,
            "agent_id": agent_id,
            "seq": seq,
            "role": role,
            "content": content,
            "reasoning_content": reasoning,
            "tool_calls": tool_calls,
            "tool_call_id": tool_call_id,
            "created_at": time.time(),
            "images": images or None,
        },
    )


def event(
    conn: Connection, run_id: str, type_: EventType, agent_id: str | None, step_id: str | None, data: dict[str, Any]
) -> None:
    conn.execute(
        sql.INSERT_EVENT,
        {
            "run_id": run_id,
            "ts": time.time(),
            "type": type_.value,
            "agent_id": agent_id,
            "step_id": step_id,
            "data": data,
        },
    )


def new_llm_step(conn: Connection, run_id: str, agent_id: str, turn: int) -> StepRef:
    step_id = new_id()
    conn.execute(
        sql.INSERT_READY_STEP,
        {
            "id": step_id,
            "run_id": run_id,
            "agent_id": agent_id,
            "kind": StepKind.LLM,
            "turn": turn,
            "idx": 0,
            "attempt": 0,
            "fence": 0,
        },
    )
    return StepRef(step_id, run_id, agent_id, StepKind.LLM)


def ready_refs(conn: Connection, run_id: str) -> list[StepRef]:
    """The run's claimable steps, to dispatch."""
    return refs(conn.execute(select(*REF_COLS).where(STEPS.c.run_id == run_id, guard(STEPS.c.status, STEP_CLAIM))))


def has_open_steps(conn: Connection, run_id: str) -> bool:
    q = select(STEPS.c.id).where(STEPS.c.run_id == run_id, STEPS.c.status.in_(OPEN)).limit(1)
    return conn.execute(q).first() is not None


def refs(rows: Iterable[Any]) -> list[StepRef]:
    """StepRefs from rows of REF_COLS."""
    return [StepRef(r.id, r.run_id, r.agent_id, StepKind(r.kind), r.tool_name) for r in rows]


def limits(row: Any) -> AgentLimits:
    """AgentLimits from a row labelled as statements._LIMITS (CLAIM, AGENT_AND_LIMITS)."""
    return AgentLimits(
        row.agent_name,
        row.agent_depth,
        row.agent_steps,
        row.max_steps,
        row.max_depth,
        row.model,
        row.max_cost_pico,
        row.max_tokens,
        row.tenant,
        row.mcp_config,
        row.provider,
        (row.provider_concurrency, row.provider_rpm, row.provider_tpm),
    )


def with_note(content: str, note: str | None) -> str:
    """A tool result as the model reads it: with the budget note its step carries, if any."""
    return content if not note else f"{content}\n{note}"
