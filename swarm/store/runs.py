"""A run's lifecycle: create, cancel, resume."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update

from swarm.constants import LAUNCH_TOOLS
from swarm.domain import prompts, quotas, sanitize
from swarm.domain.events import EventType
from swarm.domain.quotas import TenantQuota
from swarm.domain.status import (
    AGENT_REOPEN,
    RUN_CANCEL,
    RUN_RESUME,
    STEP_REAWAIT,
    STEP_REOPEN,
    STEP_REWAIT,
    AgentStatus,
    RunStatus,
    StepStatus,
)
from swarm.exceptions import InvalidTransition, StateError, StoreDataError
from swarm.store import artifacts, conversation, outcomes, step_stats, writes
from swarm.store.db import db_now
from swarm.store.session import Session, new_id
from swarm.store.statements import guard
from swarm.store.tables import AGENTS, APPROVALS, RUNS, STEPS
from swarm.store.types import RunSpec, StepRef


class Runs:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self, spec: RunSpec, quota: TenantQuota | None = None, owner: tuple[str, float] | None = None
    ) -> tuple[str, list[StepRef]]:
        """A new running run with its orchestrator and the orchestrator's first step. With an
        idempotency key already used by the tenant: that run, and nothing to dispatch. ``owner``:
        (the process that runs it, its lease in seconds); None: a cluster run."""
        if spec.idempotency_key is not None:
            if (earlier := self._by_idempotency_key(spec)) is not None:
                return earlier, []
            try:
                return self._create(spec, quota, owner)
            except StoreDataError:  # the unique index: a concurrent submission with the key won
                if (earlier := self._by_idempotency_key(spec)) is not None:
                    return earlier, []
                raise
        return self._create(spec, quota, owner)

    def check_quota(self, conn: Connection, quota: TenantQuota, tenant: str, now: float) -> None:
        """Count the tenant's runs holding its lock until the new run is committed: concurrent
        submissions take turns (PostgreSQL: a transaction-scoped advisory lock; SQLite has one
        writer), so together they cannot pass a quota."""
        writes.take_turns(conn, self.session.dialect, f"quota:{tenant}")
        mine = RUNS.c.tenant == tenant
        running = conn.execute(select(func.count()).where(mine, RUNS.c.status == RunStatus.RUNNING)).scalar_one()
        last_day = list(
            conn.execute(
                select(RUNS.c.created_at).where(mine, RUNS.c.created_at > now - quotas.DAY).order_by(RUNS.c.created_at)
            ).scalars()
        )
        quotas.check(quota, tenant, running, last_day, now)

    def _by_idempotency_key(self, spec: RunSpec) -> str | None:
        with self.session.read() as conn:
            q = select(RUNS.c.id).where(RUNS.c.idempotency_key == spec.idempotency_key)
            q = q.where(RUNS.c.tenant.is_(None) if spec.tenant is None else RUNS.c.tenant == spec.tenant)
            return conn.execute(q).scalar()

    def _create(
        self, spec: RunSpec, quota: TenantQuota | None, owner: tuple[str, float] | None
    ) -> tuple[str, list[StepRef]]:
        run_id, orch_id, now = new_id(), new_id(), time.time()
        with self.session.tx() as conn:
            if quota is not None and not quota.unlimited and spec.tenant is not None:
                self.check_quota(conn, quota, spec.tenant, now)
            conn.execute(
                insert(RUNS).values(
                    id=run_id,
                    tenant=spec.tenant,
                    task=sanitize.text(spec.task),
                    status=RunStatus.RUNNING,
                    model=spec.model,
                    max_subagents=spec.max_subagents,
                    max_tool_calls=spec.max_tool_calls,
                    max_steps_per_agent=spec.max_steps_per_agent,
                    max_wall_seconds=spec.max_wall_seconds,
                    max_depth=spec.max_depth,
                    max_spawns_per_turn=spec.max_spawns_per_turn,
                    max_cost_pico=spec.max_cost_pico,
                    max_tokens=spec.max_tokens,
                    mcp_config=spec.mcp_config,
                    provider=spec.provider,
                    provider_concurrency=spec.provider_concurrency,
                    provider_rpm=spec.provider_rpm,
                    provider_tpm=spec.provider_tpm,
                    subagents=0,
                    tool_calls=0,
                    llm_calls=0,
                    tokens_in=0,
                    tokens_out=0,
                    created_at=now,
                    started_at=now,
                    wall_before=0.0,
                    deadline=db_now() + spec.max_wall_seconds,
                    idempotency_key=spec.idempotency_key,
                    approve_tools=list(spec.approve_tools) or None,
                    approval_timeout=spec.approval_timeout,
                    owner=owner[0] if owner else None,
                    owner_until=db_now() + owner[1] if owner else None,
                )
            )
            conn.execute(
                insert(AGENTS).values(
                    id=orch_id,
                    run_id=run_id,
                    parent_id=None,
                    parent_step_id=None,
                    parent_turn=None,
                    name="orchestrator",
                    depth=0,
                    status=AgentStatus.RUNNING,
                    steps=0,
                    next_seq=2,
                    pending_tools=0,
                    tokens_in=0,
                    tokens_out=0,
                    created_at=now,
                )
            )
            system = prompts.ORCHESTRATOR_SYSTEM.format(
                max_subagents=spec.max_subagents, max_tool_calls=spec.max_tool_calls, max_steps=spec.max_steps_per_agent
            )
            writes.message(conn, run_id, orch_id, 0, "system", system)
            writes.message(conn, run_id, orch_id, 1, "user", conversation.user_content(spec.task, spec.attachments))
            for att in spec.attachments:  # named as user_content names them to the model
                artifacts.put(conn, self.session.dialect, run_id, sanitize.text(att.name), att.data)
            ref = writes.new_llm_step(conn, run_id, orch_id, 0)
            writes.event(conn, run_id, EventType.RUN_CREATED, orch_id, None, {"task": sanitize.text(spec.task[:500])})
        return run_id, [ref]

    def cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a running run (False, changing nothing, if it had already ended): every open step
        is cancelled in the same transaction, so no worker can commit (fence) or start (claim
        checks the run) anything of it afterwards. A deadlock lost against a committing step is
        retried (:data:`swarm.store.session.CONFLICT_RETRY`)."""
        return self.session.retrying_conflicts(lambda: self._cancel(run_id, reason))

    def _cancel(self, run_id: str, reason: str) -> bool:
        with self.session.tx() as conn:
            run = writes.lock_run(conn, run_id)
            if not RUN_CANCEL.allows(run.status):
                return False
            outcomes.finish_run(conn, run_id, RUN_CANCEL.target, None, reason)
            return True

    def resume(
        self,
        run_id: str,
        *,
        max_cost_pico: int | None = None,
        max_tokens: int | None = None,
        owner: tuple[str, float] | None = None,
    ) -> list[StepRef]:
        """Re-open a failed, cancelled or interrupted run; returns the steps to dispatch.
        Everything committed stays: only steps that never finished run again. A succeeded run
        cannot be resumed (InvalidTransition, changing nothing). The run now belongs to ``owner``
        (the resuming process, its lease in seconds), or to the cluster (None)."""
        with self.session.tx() as conn:
            run = writes.lock_run(conn, run_id)
            status = RunStatus(run.status)
            if status == RunStatus.SUCCEEDED:
                sources = " or ".join(sorted(RUN_RESUME.sources))
                raise InvalidTransition(
                    f"run {run_id} already succeeded; there is nothing to resume (resume "
                    f"moves a run only from {sources} to {RUN_RESUME.target})"
                )
            caps = {k: v for k, v in (("max_cost_pico", max_cost_pico), ("max_tokens", max_tokens)) if v is not None}
            taken = (
                {"owner": owner[0], "owner_until": db_now() + owner[1]}
                if owner
                else {"owner": None, "owner_until": None}
            )
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**caps, **taken))
            if RUN_RESUME.allows(status):  # else running: interrupted, its work is still open
                self._reopen(conn, run)
            refs = writes.ready_refs(conn, run_id)
            if not refs and not writes.has_open_steps(conn, run_id):
                raise StateError(f"run {run_id} has no unfinished work to resume ({run.reason or status})")
            writes.event(conn, run_id, EventType.RUN_RESUMED, None, None, {})
            return refs

    def _reopen(self, conn: Connection, run: Any) -> None:
        step_stats.count_run(conn, run.id, -1)  # its steps are live again (/metrics)
        agents = conn.execute(
            select(AGENTS.c.id, AGENTS.c.parent_step_id, AGENTS.c.item, AGENTS.c.result).where(
                AGENTS.c.run_id == run.id, guard(AGENTS.c.status, AGENT_REOPEN)
            )
        ).all()
        delivered = {
            sid
            for (sid,) in conn.execute(
                select(STEPS.c.id).where(
                    STEPS.c.run_id == run.id,
                    STEPS.c.status == StepStatus.SUCCEEDED,
                    STEPS.c.tool_name.in_(LAUNCH_TOOLS),
                )
            ).all()
        }
        # An assign_tasks subagent that failed has reported (its answer is the failure): it stays.
        reopen = [
            a.id
            for a in agents
            if (a.parent_step_id is None or a.parent_step_id not in delivered)
            and not (a.item is not None and a.result is not None)
        ]
        if reopen:
            conn.execute(
                update(AGENTS)
                .where(AGENTS.c.id.in_(reopen))
                .values(status=AGENT_REOPEN.target, reason=None, finished_at=None)
            )
            mine = STEPS.c.agent_id.in_(reopen)
            # An assign_task(s) whose subagents exist goes back to waiting for them, never re-launches.
            launched = or_(STEPS.c.child_agent_id.is_not(None), STEPS.c.pending_children.is_not(None))
            conn.execute(
                update(STEPS)
                .where(mine, guard(STEPS.c.status, STEP_REWAIT), launched)
                .values(status=STEP_REWAIT.target, owner=None, error=None)
            )
            # A tool call whose approval was never decided waits for it again: never runs unapproved.
            undecided = select(APPROVALS.c.step_id).where(APPROVALS.c.run_id == run.id, APPROVALS.c.decision.is_(None))
            conn.execute(
                update(STEPS)
                .where(mine, guard(STEPS.c.status, STEP_REAWAIT), STEPS.c.id.in_(undecided))
                .values(status=STEP_REAWAIT.target, owner=None, error=None)
            )
            conn.execute(
                update(STEPS)
                .where(mine, guard(STEPS.c.status, STEP_REOPEN))
                .values(status=STEP_REOPEN.target, owner=None, attempt=0, error=None, ready_at=db_now())
            )
        wall = (run.finished_at or time.time()) - (run.started_at or run.created_at)
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == run.id, guard(RUNS.c.status, RUN_RESUME))
            .values(
                status=RUN_RESUME.target,
                reason=None,
                finished_at=None,
                started_at=time.time(),
                wall_before=RUNS.c.wall_before + max(0.0, wall),
                deadline=db_now() + RUNS.c.max_wall_seconds,
                # Nothing of an ended run is in flight: reservations left were of calls whose
                # answers were lost (a worker died); their steps run again and reserve anew.
                reserved_pico=0,
                reserved_tokens=0,
            )
        )
