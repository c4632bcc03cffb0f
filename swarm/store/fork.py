"""Forking a run: a new run with the origin's history up to a step, going on from there.

What is kept is decided by :func:`swarm.domain.fork.plan_fork` (the cut, and why it is safe);
this module reads the origin's rows and writes the fork's in one transaction, with new ids for
the run, its agents and its steps. Files: a run keeps only the latest version of each file, so the
fork starts with the origin's files as they are when it is forked (not as of the fork point).
The origin is only read, never changed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlalchemy import Connection, insert, literal, select

from swarm.constants import ASSIGN_TASKS, LAUNCH_TOOLS, ORCHESTRATION_TOOLS
from swarm.domain import fanout, sanitize
from swarm.domain.events import EventType
from swarm.domain.fork import Fate, ForkPlan, plan_fork
from swarm.domain.quotas import TenantQuota
from swarm.domain.status import AgentStatus, RunStatus, StepKind, StepStatus
from swarm.exceptions import InputError, NotFound
from swarm.store import writes
from swarm.store.db import db_now
from swarm.store.runs import Runs
from swarm.store.session import Session, new_id
from swarm.store.tables import AGENTS, ARTIFACTS, DEFS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.types import StepRef
from swarm.store.views import LiveViews

_HEX = re.compile(r"[0-9a-f]{1,32}")
#: What a step that runs again in the fork starts from.
_FRESH = dict(
    status=StepStatus.READY,
    result=None,
    is_error=False,
    attempt=0,
    fence=0,
    owner=None,
    lease_until=None,
    started_at=None,
    finished_at=None,
    tokens_in=0,
    tokens_out=0,
    tokens_cached=None,
    tokens_reasoning=None,
    cost_pico=None,
    error=None,
    child_agent_id=None,
    pending_children=None,
)
#: Run columns a fork takes over from its origin as they are.
_SAME: tuple[str, ...] = ("tenant", "task", "model", "max_subagents", "max_tool_calls", "max_steps_per_agent")
_SAME += ("max_wall_seconds", "max_depth", "max_spawns_per_turn", "max_cost_pico", "max_tokens")
#: The provider too: the model belongs to it, and the fork is the same work on the same account.
_SAME += ("provider", "provider_concurrency", "provider_rpm", "provider_tpm")


class Forks:
    def __init__(self, session: Session, live: LiveViews, runs: Runs) -> None:
        self.session = session
        self.live = live  # its run_status: the existence and tenancy check
        self.runs = runs  # its check_quota: a fork is a new run of the tenant

    def fork(
        self,
        run_id: str,
        at: str,
        *,
        message: str | None = None,
        tenant: str | None = None,
        quota: TenantQuota | None = None,
    ) -> tuple[str, list[StepRef]]:
        """Fork ``run_id`` at its step ``at`` (a whole step id or a unique prefix); ``message``
        replaces the last message the step's agent reads before an LLM step. Returns the new
        run's id and its ready steps, to dispatch. ``quota``: the tenant's, as for a submission."""
        self.live.run_status(run_id, tenant)  # NotFound for an unknown run or another tenant's
        with self.session.snapshot() as conn:  # the origin may be running: one consistent view of it
            step = self._step(conn, run_id, at)
            if message is not None and step.kind != StepKind.LLM:
                raise InputError(
                    f"step {step.id} is a {step.tool_name} call: --message replaces the message an agent "
                    "reads before a model call, so fork at an LLM step to give one"
                )
            run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
            steps = conn.execute(select(STEPS).where(STEPS.c.run_id == run_id)).all()
            agents = conn.execute(select(AGENTS).where(AGENTS.c.run_id == run_id)).all()
            keys = conn.execute(
                select(MESSAGES.c.agent_id, MESSAGES.c.seq, MESSAGES.c.role).where(MESSAGES.c.run_id == run_id)
            ).all()
            events = conn.execute(
                select(EVENTS.c.id, EVENTS.c.type, EVENTS.c.agent_id, EVENTS.c.step_id, EVENTS.c.data)
                .where(EVENTS.c.run_id == run_id)
                .order_by(EVENTS.c.id)
            ).all()
        plan = plan_fork(step, steps, agents, keys, events)
        new_run = new_id()
        ids = {a.id: new_id() for a in agents if a.id in plan.agents}
        ids.update({s.id: new_id() for s in steps if s.id in plan.steps})
        with self.session.tx() as conn:
            if quota is not None and not quota.unlimited and run.tenant is not None:
                self.runs.check_quota(conn, quota, run.tenant, time.time())
            self._run(conn, run, new_run, step.id, plan, steps, agents)
            self._agents(conn, new_run, plan, agents, ids, steps)
            self._steps(conn, new_run, plan, steps, ids)
            self._messages(conn, run_id, new_run, plan, ids, message)
            self._copy_rest(conn, run_id, new_run, plan, events, ids)
            writes.event(
                conn, new_run, EventType.RUN_FORKED, None, ids[step.id], {"from_run": run_id, "at_step": step.id}
            )
            return new_run, writes.ready_refs(conn, new_run)

    @staticmethod
    def _step(conn: Connection, run_id: str, at: str) -> Any:
        text = at.strip().lower()
        if not _HEX.fullmatch(text):
            raise InputError(
                f"{at!r} is not a step id: step ids are 32 hex characters (`swarm export RUN` lists every step)"
            )
        rows = conn.execute(
            select(STEPS).where(STEPS.c.run_id == run_id, STEPS.c.id.startswith(text, autoescape=True)).limit(2)
        ).all()
        if not rows:
            raise NotFound(f"run {run_id} has no step {at!r}")
        if len(rows) > 1:
            raise InputError(f"{at!r} names more than one step of run {run_id}: give more of the id")
        return rows[0]

    def _run(self, conn: Connection, run: Any, new_run: str, at: str, plan: ForkPlan, steps: Any, agents: Any) -> None:
        kept_llm = [s for s in steps if s.kind == StepKind.LLM and plan.steps.get(s.id) == Fate.KEEP]
        kept_llm = [s for s in kept_llm if s.status == StepStatus.SUCCEEDED]
        tools = [s for s in steps if s.kind == StepKind.TOOL and s.id in plan.steps and s.call_key is not None]
        subagents = sum(1 for a in agents if a.id in plan.agents and a.parent_step_id) + sum(
            _spawns(s) for s in tools if s.tool_name in LAUNCH_TOOLS and plan.steps[s.id] == Fate.READY
        )
        costs = [s.cost_pico for s in kept_llm]
        now = time.time()
        conn.execute(
            insert(RUNS).values(
                id=new_run,
                **{c: getattr(run, c) for c in _SAME},
                status=RunStatus.RUNNING,
                subagents=subagents,
                tool_calls=sum(1 for s in tools if s.tool_name not in ORCHESTRATION_TOOLS),
                llm_calls=len(kept_llm),
                tokens_in=sum(s.tokens_in for s in kept_llm),
                tokens_out=sum(s.tokens_out for s in kept_llm),
                tokens_cached=sum(s.tokens_cached or 0 for s in kept_llm),
                cost_pico=None if any(c is None for c in costs) else sum(costs),
                reserved_pico=0,
                reserved_tokens=0,
                created_at=now,
                started_at=now,
                wall_before=0.0,
                deadline=db_now() + run.max_wall_seconds,
                forked_from_run_id=run.id,
                forked_at_step_id=at,
            )
        )

    def _agents(
        self, conn: Connection, new_run: str, plan: ForkPlan, agents: Any, ids: dict[str, str], steps: Any
    ) -> None:
        usage: dict[str, list[Any]] = {}
        for s in steps:
            if s.kind == StepKind.LLM and plan.steps.get(s.id) == Fate.KEEP and s.status == StepStatus.SUCCEEDED:
                usage.setdefault(s.agent_id, []).append(s)
        rows = []
        for a in agents:
            p = plan.agents.get(a.id)
            if p is None:
                continue
            mine = usage.get(a.id, [])
            costs = [s.cost_pico for s in mine]
            rows.append(
                dict(
                    id=ids[a.id],
                    run_id=new_run,
                    parent_id=ids.get(a.parent_id) if a.parent_id else None,
                    parent_step_id=ids.get(a.parent_step_id) if a.parent_step_id else None,
                    parent_turn=a.parent_turn,
                    item=a.item,
                    name=a.name,
                    depth=a.depth,
                    status=a.status if p.ended else AgentStatus.RUNNING,
                    reason=a.reason if p.ended else None,
                    # A fan-out subagent's answer (or failure) is kept once it has reported.
                    result=a.result if p.ended else None,
                    steps=p.llm_turns,
                    next_seq=p.next_seq,
                    pending_tools=p.pending_tools,
                    tokens_in=sum(s.tokens_in for s in mine),
                    tokens_out=sum(s.tokens_out for s in mine),
                    tokens_cached=sum(s.tokens_cached or 0 for s in mine),
                    cost_pico=None if any(c is None for c in costs) else sum(costs),
                    created_at=a.created_at,
                    finished_at=a.finished_at if p.ended else None,
                )
            )
        conn.execute(insert(AGENTS), rows)

    def _steps(self, conn: Connection, new_run: str, plan: ForkPlan, steps: Any, ids: dict[str, str]) -> None:
        rows = []
        for s in steps:
            fate = plan.steps.get(s.id)
            if fate is None:
                continue
            row = {c.name: getattr(s, c.name) for c in STEPS.columns}
            row.update(id=ids[s.id], run_id=new_run, agent_id=ids[s.agent_id])
            if fate == Fate.READY:
                row.update(_FRESH, ready_at=time.time())
            elif fate == Fate.WAITING:
                row.update(status=StepStatus.WAITING, owner=None, lease_until=None, error=None)
                row["pending_children"] = plan.pending_children.get(s.id, s.pending_children)
            if row["child_agent_id"] is not None:
                row["child_agent_id"] = ids.get(row["child_agent_id"])
            rows.append(row)
        conn.execute(insert(STEPS), rows)

    def _messages(
        self, conn: Connection, run_id: str, new_run: str, plan: ForkPlan, ids: dict[str, str], message: str | None
    ) -> None:
        rows = []
        for m in conn.execute(select(MESSAGES).where(MESSAGES.c.run_id == run_id).order_by(MESSAGES.c.id)):
            if (m.agent_id, m.seq) not in plan.messages:
                continue
            content = m.content
            if message is not None and (m.agent_id, m.seq) == plan.replaced:
                content = sanitize.text(message)
            rows.append(
                dict(
                    run_id=new_run,
                    agent_id=ids[m.agent_id],
                    seq=m.seq,
                    role=m.role,
                    content=content,
                    reasoning_content=m.reasoning_content,
                    tool_calls=m.tool_calls,
                    tool_call_id=m.tool_call_id,
                    created_at=m.created_at,
                )
            )
        if rows:
            conn.execute(insert(MESSAGES), rows)

    def _copy_rest(
        self, conn: Connection, run_id: str, new_run: str, plan: ForkPlan, events: Any, ids: dict[str, str]
    ) -> None:
        """The subagent types defined before the cut, the events before it, and the run's files."""
        defs = conn.execute(select(DEFS).where(DEFS.c.run_id == run_id)).all()
        kept = [d for d in defs if d.name in plan.defs]
        if kept:
            conn.execute(
                insert(DEFS),
                [
                    dict(
                        run_id=new_run,
                        name=d.name,
                        system_prompt=d.system_prompt,
                        created_by=ids.get(d.created_by, d.created_by),
                        created_at=d.created_at,
                    )
                    for d in kept
                ],
            )
        ts = {e.id: e for e in conn.execute(select(EVENTS.c.id, EVENTS.c.ts).where(EVENTS.c.run_id == run_id))}
        history = [
            dict(
                run_id=new_run,
                ts=ts[e.id].ts,
                type=e.type,
                agent_id=ids.get(e.agent_id) if e.agent_id else None,
                step_id=ids.get(e.step_id) if e.step_id else None,
                data=e.data,
            )
            for e in events
            if e.id < plan.cut and e.type != EventType.RUN_DONE
        ]
        if history:
            conn.execute(insert(EVENTS), history)
        A = ARTIFACTS.c
        conn.execute(
            insert(ARTIFACTS).from_select(
                ["run_id", "path", "data", "sha256", "size", "updated_at"],
                select(literal(new_run), A.path, A.data, A.sha256, A.size, A.updated_at).where(A.run_id == run_id),
            )
        )


def _spawns(step: Any) -> int:
    if step.tool_name != ASSIGN_TASKS:
        return 1
    try:
        return fanout.spawns(json.loads(step.arguments or "{}").get("items"))
    except (ValueError, AttributeError):
        return 0
