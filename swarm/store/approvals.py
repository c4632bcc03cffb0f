"""Approvals: a human decision on one tool call, stored once and keyed by its step.

A model turn's commit creates a call that needs approval as an ``awaiting_approval`` step with an
``approvals`` row (:func:`request`, inside the turn's transaction). A decision is one transaction
under the run's lock: the row's ``decision`` goes from NULL to approved or rejected (a second
decision matches 0 rows: :class:`AlreadyDecided`) and the step moves with it — approved: ready
(dispatched like any ready step; the sweeper re-publishes it if the dispatch is lost), rejected:
delivered as a tool error carrying the reason (fan-in as for any result). Either both happen or
neither. The sweeper rejects requests past their ``expires_at`` ("approval expired").
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, Float, bindparam, insert, select, update

from swarm.domain import approvals, sanitize
from swarm.domain.approvals import Decision
from swarm.domain.events import EventType
from swarm.domain.status import STEP_APPROVE, StepKind, StepStatus
from swarm.exceptions import AlreadyDecided, FenceLost, NotFound, StateError
from swarm.store import outcomes, writes
from swarm.store.db import db_now
from swarm.store.session import Session
from swarm.store.statements import guard
from swarm.store.tables import AGENTS, APPROVALS, RUNS, STEPS
from swarm.store.types import ApprovalInfo, StepRef

P = APPROVALS.c

#: One request per call; ``expires_at`` on the database clock (NULL + anything is NULL: no expiry).
_REQUEST = insert(APPROVALS).values(
    expires_at=db_now() + bindparam("b_timeout", type_=Float()),
)


def request(
    conn: Connection, run_id: str, agent_id: str, calls: Sequence[dict[str, Any]], timeout: float | None
) -> None:
    """Record the approval requests of a turn's calls (step rows already inserted, awaiting
    approval): one row and one ``approval_requested`` event each. Runs in the turn's transaction."""
    now = time.time()
    conn.execute(
        _REQUEST,
        [
            {
                "step_id": c["id"],
                "run_id": run_id,
                "agent_id": agent_id,
                "tool": c["tool_name"],
                "arguments": approvals.preview(c["arguments"]),
                "requested_at": now,
                "b_timeout": timeout,
            }
            for c in calls
        ],
    )
    for c in calls:
        writes.event(conn, run_id, EventType.APPROVAL_REQUESTED, agent_id, c["id"], {"tool": c["tool_name"]})


def _info(row: Any) -> ApprovalInfo:
    return ApprovalInfo(
        step_id=row.step_id,
        run_id=row.run_id,
        agent_id=row.agent_id,
        agent=row.agent_name,
        tool=row.tool,
        arguments=row.arguments,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        status=row.decision or "pending",
        note=row.note,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
    )


def _select() -> Any:
    return select(APPROVALS, AGENTS.c.name.label("agent_name")).join_from(
        APPROVALS, AGENTS, AGENTS.c.id == P.agent_id, isouter=True
    )


class Approvals:
    def __init__(self, session: Session) -> None:
        self.session = session

    def find(
        self,
        *,
        run_id: str | None = None,
        tenant: str | None = None,
        pending: bool = False,
        step_prefix: str | None = None,
        limit: int = 500,
    ) -> list[ApprovalInfo]:
        """Approval requests, oldest first: a run's (every one, or only the ``pending``), or a
        tenant's across its runs. ``step_prefix``: only steps whose id starts with it."""
        q = _select().order_by(P.requested_at, P.step_id).limit(limit)
        if run_id is not None:
            q = q.where(P.run_id == run_id)
        if tenant is not None:
            q = q.where(P.run_id.in_(select(RUNS.c.id).where(RUNS.c.tenant == tenant)))
        if pending:
            q = q.where(P.decision.is_(None))
        if step_prefix:
            q = q.where(P.step_id.startswith(step_prefix, autoescape=True))
        with self.session.read() as conn:
            return [_info(r) for r in conn.execute(q).all()]

    def get(self, step_id: str, *, run_id: str | None = None, tenant: str | None = None) -> ApprovalInfo:
        q = _select().where(P.step_id == step_id)
        if run_id is not None:
            q = q.where(P.run_id == run_id)
        if tenant is not None:
            q = q.where(P.run_id.in_(select(RUNS.c.id).where(RUNS.c.tenant == tenant)))
        with self.session.read() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"no approval request for step {step_id}" + (f" in run {run_id}" if run_id else ""))
        return _info(row)

    def decide(
        self,
        step_id: str,
        decision: Decision,
        note: str | None,
        by: str,
        *,
        run_id: str | None = None,
        tenant: str | None = None,
    ) -> tuple[ApprovalInfo, list[StepRef]]:
        """Decide a pending request once; returns it and the steps to dispatch (the approved call,
        or the agent's next turn when a rejection was its last outstanding result). NotFound for
        another tenant's (or run's) step; AlreadyDecided for a second decision; StateError when
        its run is not running (resume it first)."""
        note = approvals.check_reason(decision, note)
        self.get(step_id, run_id=run_id, tenant=tenant)  # NotFound before any lock is taken
        refs = self.session.retrying_conflicts(lambda: self._decide(step_id, decision, note, by))
        return self.get(step_id), refs

    def _decide(self, step_id: str, decision: Decision, note: str | None, by: str) -> list[StepRef]:
        note = None if note is None else sanitize.text(note)
        with self.session.tx() as conn:
            row = conn.execute(select(APPROVALS).where(P.step_id == step_id)).first()
            if row is None:  # its run was deleted meanwhile
                raise NotFound(f"no approval request for step {step_id}")
            writes.lock_run(conn, row.run_id)  # lock order: run → step → agent, as cancel takes them
            decided = conn.execute(
                update(APPROVALS)
                .where(P.step_id == step_id, P.decision.is_(None))
                .values(decision=decision.value, note=note, decided_at=time.time(), decided_by=by[:128])
            ).rowcount
            if not decided:
                raise self._already(conn, step_id)
            status = conn.execute(select(STEPS.c.status).where(STEPS.c.id == step_id)).scalar_one()
            if status != StepStatus.AWAITING_APPROVAL:
                # Rolled back with the decision: a cancelled run's call is decided after its resume.
                raise StateError(
                    f"step {step_id} is {status}, not awaiting approval: its run is not running "
                    "(resume the run, then decide)"
                )
            if decision == Decision.APPROVED:
                refs = self._approve(conn, step_id)
            else:
                refs = self._reject(conn, row, note or approvals.EXPIRED)
            writes.event(
                conn,
                row.run_id,
                EventType.APPROVAL_DECIDED,
                row.agent_id,
                step_id,
                {"tool": row.tool, "decision": decision.value, "note": note, "by": by[:128]},
            )
            return refs

    @staticmethod
    def _already(conn: Connection, step_id: str) -> AlreadyDecided:
        row = conn.execute(select(P.decision, P.decided_by).where(P.step_id == step_id)).one()
        return AlreadyDecided(
            f"step {step_id}'s tool call was already {row.decision} (by {row.decided_by}); "
            "a decision is taken once and cannot be changed"
        )

    @staticmethod
    def _approve(conn: Connection, step_id: str) -> list[StepRef]:
        rows = conn.execute(
            update(STEPS)
            .where(STEPS.c.id == step_id, guard(STEPS.c.status, STEP_APPROVE))
            .values(status=STEP_APPROVE.target, ready_at=db_now())
            .returning(*writes.REF_COLS)
        ).all()
        return writes.refs(rows)

    @staticmethod
    def _reject(conn: Connection, row: Any, reason: str) -> list[StepRef]:
        text = approvals.rejection_text(row.tool, reason)
        try:
            refs = outcomes.deliver(conn, row.step_id, text, True, StepStatus.AWAITING_APPROVAL, None)
        except FenceLost as exc:  # cannot happen under the run lock with the status read above
            raise StateError(f"step {row.step_id} moved while it was being decided; try again") from exc
        conn.execute(update(STEPS).where(STEPS.c.id == row.step_id).values(error=f"rejected: {reason}"))
        writes.event(
            conn,
            row.run_id,
            EventType.TOOL_DONE,
            row.agent_id,
            row.step_id,
            {"tool": row.tool, "error": True, "reason": f"rejected: {reason}"},
        )
        return refs

    def expire(self, run_ids: Collection[str] | None = None) -> list[StepRef]:
        """Reject the requests nobody decided before their ``expires_at`` (the sweeper's job):
        an undecided request that ran out of time counts as refused, never as approved."""
        if run_ids is not None and not run_ids:
            return []
        q = (
            select(P.step_id)
            .join_from(APPROVALS, STEPS, STEPS.c.id == P.step_id)
            .where(
                P.decision.is_(None),
                P.expires_at < db_now(),
                STEPS.c.status == StepStatus.AWAITING_APPROVAL,
                STEPS.c.kind == StepKind.TOOL,
            )
        )
        if run_ids is not None:
            q = q.where(P.run_id.in_(list(run_ids)))
        with self.session.read() as conn:
            due = list(conn.execute(q).scalars())
        refs: list[StepRef] = []
        for step_id in due:
            try:
                refs += self._expire_one(step_id)
            except (StateError, NotFound):
                continue  # decided, its run ended or was deleted meanwhile
        return refs

    def _expire_one(self, step_id: str) -> list[StepRef]:
        return self.session.retrying_conflicts(
            lambda: self._decide(step_id, Decision.REJECTED, approvals.EXPIRED, "expiry")
        )
