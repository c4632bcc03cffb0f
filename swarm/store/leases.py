"""Leases: who runs a step. Claim under a lease and a fence, renew it (heartbeat), hand it back,
and sweep up the steps whose worker died; a poison step is given up instead of retried forever."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import and_, select, update

from swarm.constants import MAX_STEP_ATTEMPTS
from swarm.domain import prompts
from swarm.domain.events import EventType
from swarm.domain.status import (
    RUN_FAIL,
    STEP_EXPIRE,
    STEP_GIVE_UP,
    STEP_RELEASE,
    STEP_RENEW,
    STEP_REPUBLISH,
    AgentStatus,
    RunStatus,
    StepKind,
    StepStatus,
)
from swarm.exceptions import FenceLost
from swarm.store import outcomes, writes
from swarm.store import statements as sql
from swarm.store.db import db_now
from swarm.store.session import Session
from swarm.store.statements import guard
from swarm.store.tables import RUNS, STEPS
from swarm.store.types import Claim, StepRef
from swarm.store.writes import GIVE_UP_COLS, REF_COLS


class Leases:
    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, step_id: str, owner: str, lease: float, max_attempts: int = MAX_STEP_ATTEMPTS) -> Claim | None:
        """Take a step under a lease; None if it is not claimable (done, held, run not running)."""
        # A run past its deadline is not claimable either; the sweeper then ends it as failed.
        with self.session.single() as conn:
            row = conn.execute(
                sql.CLAIM,
                {"b_id": step_id, "b_max": max_attempts, "b_owner": owner, "b_lease": lease, "b_now": time.time()},
            ).first()
            if row is None:
                return None
            return Claim(
                step_id,
                row.run_id,
                row.agent_id,
                StepKind(row.kind),
                row.fence,
                row.attempt,
                row.turn,
                row.idx,
                owner,
                row.tool_name,
                row.tool_call_id,
                row.arguments,
                bool(row.run_has_files),
                row.msg_seq,
                row.note,
                writes.limits(row) if row.agent_name is not None else None,
            )

    def heartbeat(self, owner: str, lease: float, steps: Collection[str] | None = None) -> int:
        """Renew the leases of every step this owner is running (only of ``steps``, if given: a
        step whose worker thread gave up must expire, or nobody would ever take it over)."""
        cond = [STEPS.c.owner == owner, guard(STEPS.c.status, STEP_RENEW)]
        if steps is not None:
            if not steps:
                return 0
            cond.append(STEPS.c.id.in_(list(steps)))
        with self.session.single() as conn:
            res = conn.execute(update(STEPS).where(*cond).values(lease_until=db_now() + lease))
            return res.rowcount

    def own_runs(self, owner: str, lease: float, run_ids: Collection[str]) -> int:
        """Take over (or keep) the running runs ``run_ids`` for ``owner`` for ``lease`` more seconds:
        its heartbeat, so that readers can tell a run whose process died (``domain/liveness.py``)."""
        if not run_ids:
            return 0
        with self.session.single() as conn:
            return conn.execute(
                update(RUNS)
                .where(RUNS.c.id.in_(list(run_ids)), RUNS.c.status == RunStatus.RUNNING)
                .values(owner=owner, owner_until=db_now() + lease)
            ).rowcount

    def still_claimed(self, claim: Claim) -> bool:
        """Whether this claim still holds its step (not cancelled, not taken over)."""
        with self.session.read() as conn:
            row = conn.execute(select(STEPS.c.status, STEPS.c.fence).where(STEPS.c.id == claim.step_id)).first()
        return row is not None and row.status == StepStatus.RUNNING and row.fence == claim.fence

    def run_mcp_config(self, run_id: str) -> str | None:
        """The run's own MCP config, read by a claimed mcp__ tool step (None: the deployment's only)."""
        with self.session.read() as conn:
            return conn.execute(sql.RUN_MCP_CONFIG, {"b_id": run_id}).scalar()

    def release(self, claim: Claim) -> None:
        """Hand a step back untouched (e.g. on worker shutdown) so another worker can take it now.
        Nothing if the claim was lost meanwhile (cancelled, taken over)."""
        with self.session.single() as conn:
            conn.execute(
                update(STEPS)
                .where(STEPS.c.id == claim.step_id, STEPS.c.fence == claim.fence, guard(STEPS.c.status, STEP_RELEASE))
                .values(status=STEP_RELEASE.target, owner=None, ready_at=db_now(), attempt=STEPS.c.attempt - 1)
            )

    def sweep(
        self, republish_after: float, max_attempts: int = MAX_STEP_ATTEMPTS, run_ids: Collection[str] | None = None
    ) -> list[StepRef]:
        """Find work that is stuck and return it for re-dispatch: steps whose lease expired (their
        worker died), ready steps never started (lost publish, Redis flushed), overdue runs.

        A step may be claimed ``max_attempts`` times (SWARM_STEP_MAX_CRASHES). A claim ends in a
        commit, a failure or a release, or else its lease expires because its worker is gone: an
        expired step that has used every attempt crashed its worker that many times (a poison
        step) and is given up (:meth:`give_up`) instead of being handed to the next worker to
        kill. A ready step with no attempt left (nobody could claim it) is given up too.
        ``run_ids`` limits the sweep to those runs (the embedded mode sweeps only its own)."""
        refs: list[StepRef] = []
        if run_ids is not None and not run_ids:
            return refs
        mine = [STEPS.c.run_id.in_(list(run_ids))] if run_ids is not None else []
        with self.session.tx() as conn:
            overdue = select(RUNS.c.id).where(guard(RUNS.c.status, RUN_FAIL), RUNS.c.deadline < db_now())
            if run_ids is not None:
                overdue = overdue.where(RUNS.c.id.in_(list(run_ids)))
            for (run_id,) in conn.execute(overdue).all():
                writes.lock_run(conn, run_id)
                outcomes.finish_run(conn, run_id, RUN_FAIL.target, None, prompts.TIME_LIMIT)
            expired = and_(*mine, guard(STEPS.c.status, STEP_EXPIRE), STEPS.c.lease_until < db_now())
            crashed = conn.execute(select(*GIVE_UP_COLS).where(expired, STEPS.c.attempt >= max_attempts)).all()
            rows = conn.execute(
                update(STEPS)
                .where(expired, STEPS.c.attempt < max_attempts)
                .values(status=STEP_EXPIRE.target, owner=None, ready_at=db_now())
                .returning(*REF_COLS)
            ).all()
            refs += writes.refs(rows)
            stale = and_(*mine, guard(STEPS.c.status, STEP_REPUBLISH), STEPS.c.ready_at < db_now() - republish_after)
            exhausted = conn.execute(select(*GIVE_UP_COLS).where(stale, STEPS.c.attempt >= max_attempts)).all()
            rows = conn.execute(
                update(STEPS)
                .where(stale, STEPS.c.attempt < max_attempts)
                .values(ready_at=db_now())
                .returning(*REF_COLS)
            ).all()
            refs += writes.refs(rows)
        for row in crashed:
            refs += self.give_up(row, prompts.crashed_reason(row.attempt), crashed=True)
        for row in exhausted:
            refs += self.give_up(row, prompts.ATTEMPTS_USED.format(times=row.attempt), crashed=False)
        return refs

    def give_up(self, row: Any, reason: str, *, crashed: bool) -> list[StepRef]:
        """End a step (a row of GIVE_UP_COLS) that must not run again. A tool call's result
        becomes a tool error saying why, so the model hears of it and the run goes on; an LLM
        step fails, and its agent with it (a subagent's parent hears of that as a tool error)."""
        try:
            with self.session.tx() as conn:
                writes.lock_run(conn, row.run_id)
                if row.kind == StepKind.TOOL:
                    text = (
                        prompts.TOOL_CRASHED.format(name=row.tool_name, times=row.attempt)
                        if crashed
                        else prompts.TOOL_NOT_RUN.format(name=row.tool_name, reason=reason)
                    )
                    refs = outcomes.deliver(conn, row.id, text, True, StepStatus(row.status), row.fence)
                    conn.execute(update(STEPS).where(STEPS.c.id == row.id).values(error=reason))
                    writes.event(
                        conn,
                        row.run_id,
                        EventType.TOOL_DONE,
                        row.agent_id,
                        row.id,
                        {"tool": row.tool_name, "error": True, "reason": reason},
                    )
                    return refs
                STEP_GIVE_UP.check(row.status, f"step {row.id}")
                n = conn.execute(
                    update(STEPS)
                    .where(STEPS.c.id == row.id, STEPS.c.fence == row.fence, STEPS.c.status == row.status)
                    .values(status=STEP_GIVE_UP.target, owner=None, finished_at=time.time(), error=reason)
                ).rowcount
                if not n:
                    return []  # somebody finished it (or the run ended) after all
                writes.event(conn, row.run_id, EventType.STEP_FAILED, row.agent_id, row.id, {"error": reason})
                return outcomes.finish_agent(conn, row.agent_id, AgentStatus.FAILED, None, reason)
        except FenceLost:
            return []  # somebody finished it (or the run ended) after all

    def release_dead_owners(
        self, run_id: str, is_dead: Callable[[str], bool], max_attempts: int = MAX_STEP_ATTEMPTS
    ) -> int:
        """Free steps held by owners known to be dead (same-host pid check) without waiting for
        their leases to expire: what `swarm resume` does after a kill -9 of `swarm run`, and the
        server on start for the runs it adopts. A step whose dead owner held its last attempt
        crashed its worker ``max_attempts`` times and is given up, as :meth:`sweep` does: code
        that kills the server is not run again on every start. Returns how many steps were freed."""
        with self.session.tx() as conn:
            owners = {
                o
                for (o,) in conn.execute(
                    select(STEPS.c.owner).distinct().where(STEPS.c.run_id == run_id, guard(STEPS.c.status, STEP_EXPIRE))
                )
                if o
            }
            gone = [o for o in owners if is_dead(o)]
            if not gone:
                return 0
            held = and_(STEPS.c.run_id == run_id, guard(STEPS.c.status, STEP_EXPIRE), STEPS.c.owner.in_(gone))
            crashed = conn.execute(select(*GIVE_UP_COLS).where(held, STEPS.c.attempt >= max_attempts)).all()
            freed = conn.execute(
                update(STEPS)
                .where(held, STEPS.c.attempt < max_attempts)
                .values(status=STEP_EXPIRE.target, owner=None, ready_at=db_now())
            ).rowcount
        for row in crashed:
            self.give_up(row, prompts.crashed_reason(row.attempt), crashed=True)
        return freed
