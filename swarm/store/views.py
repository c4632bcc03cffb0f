"""Read models for the CLI, the API and live views. Read-only queries; part of the state store."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, select

from swarm.domain.critical import AgentSteps, critical_steps, total_steps
from swarm.domain.status import RunStatus, StepKind
from swarm.exceptions import NotFound
from swarm.store.models import Agent, Event, Message, Run, Step
from swarm.store.types import RunSummary


class ViewsMixin:
    """Mixed into :class:`swarm.store.store.StateStore`; needs its ``read()``."""

    def read(self) -> Any: ...  # provided by StateStore

    def run_summary(self, run_id: str, tenant: str | None = None) -> RunSummary:
        with self.read() as conn:
            run = self._run_row(conn, run_id, tenant)
            live = run.status == RunStatus.RUNNING or run.critical_steps is None
            crit, total = (self._live_steps(conn, run_id) if live else (run.critical_steps, run.total_steps))
        return _summary(run, crit, total)

    def list_runs(self, *, tenant: str | None = None, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[RunSummary]:
        with self.read() as conn:
            q = select(Run).order_by(Run.created_at.desc()).limit(limit).offset(offset)
            if tenant is not None:
                q = q.where(Run.tenant == tenant)
            if status:
                q = q.where(Run.status == status)
            rows = conn.execute(q).all()
        return [_summary(r, r.critical_steps or 0, r.total_steps or r.llm_calls) for r in rows]

    def agent_tree(self, run_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every agent of a run with its status and counts, parents before children."""
        with self.read() as conn:
            self._run_row(conn, run_id, tenant)
            agents = conn.execute(select(Agent).where(Agent.run_id == run_id).order_by(Agent.created_at)).all()
            tools = dict(conn.execute(select(Step.agent_id, func.count()).where(
                Step.run_id == run_id, Step.kind == StepKind.TOOL).group_by(Step.agent_id)).all())
        return [{"id": a.id, "parent_id": a.parent_id, "name": a.name, "depth": a.depth, "status": a.status,
                 "reason": a.reason, "steps": a.steps, "tool_calls": int(tools.get(a.id, 0)),
                 "tokens_in": a.tokens_in, "tokens_out": a.tokens_out, "parent_turn": a.parent_turn,
                 "created_at": a.created_at, "finished_at": a.finished_at,
                 "result": (a.result or "")[:2000] or None} for a in agents]

    def agent_counts(self, run_id: str) -> dict[str, int]:
        """How many agents of a run are in each status (cheap enough to poll)."""
        with self.read() as conn:
            rows = conn.execute(select(Agent.status, func.count()).where(Agent.run_id == run_id)
                                .group_by(Agent.status)).all()
        return {str(status): int(n) for status, n in rows}

    def events_since(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(select(Event).where(Event.run_id == run_id, Event.id > after_id)
                                .order_by(Event.id).limit(limit)).all()
        return [{"id": e.id, "ts": e.ts, "type": e.type, "agent_id": e.agent_id, "step_id": e.step_id,
                 "data": e.data} for e in rows]

    def steps_timeline(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(select(Step.id, Step.agent_id, Step.kind, Step.status, Step.turn, Step.idx,
                                       Step.tool_name, Step.started_at, Step.finished_at, Step.attempt,
                                       Step.tokens_in, Step.tokens_out, Step.is_error)
                                .where(Step.run_id == run_id).order_by(Step.started_at)).all()
        return [dict(r._mapping) for r in rows]

    def messages_of(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(select(Message).where(Message.run_id == run_id)
                                .order_by(Message.agent_id, Message.seq)).all()
        return [{"agent_id": m.agent_id, "seq": m.seq, "role": m.role, "content": m.content,
                 "reasoning_content": m.reasoning_content, "tool_calls": m.tool_calls,
                 "tool_call_id": m.tool_call_id, "created_at": m.created_at} for m in rows]

    def storage_rows(self, run_id: str) -> dict[str, int]:
        """Row counts per table for one run: proves storage grows linearly with work."""
        with self.read() as conn:
            return {
                "messages": conn.execute(select(func.count()).select_from(Message).where(Message.run_id == run_id)).scalar_one(),
                "steps": conn.execute(select(func.count()).select_from(Step).where(Step.run_id == run_id)).scalar_one(),
                "events": conn.execute(select(func.count()).select_from(Event).where(Event.run_id == run_id)).scalar_one(),
                "agents": conn.execute(select(func.count()).select_from(Agent).where(Agent.run_id == run_id)).scalar_one(),
            }

    def _run_row(self, conn: Connection, run_id: str, tenant: str | None) -> Any:
        q = select(Run).where(Run.id == run_id)
        if tenant is not None:
            q = q.where(Run.tenant == tenant)
        run = conn.execute(q).first()
        if run is None:
            raise NotFound(f"no run {run_id!r}; `swarm ls` lists runs")
        return run

    def _live_steps(self, conn: Connection, run_id: str) -> tuple[int, int]:
        agents = [AgentSteps(a.id, a.parent_id, a.parent_turn, a.steps) for a in conn.execute(
            select(Agent.id, Agent.parent_id, Agent.parent_turn, Agent.steps).where(Agent.run_id == run_id))]
        return critical_steps(agents), total_steps(agents)


def _summary(run: Any, crit: int, total: int) -> RunSummary:
    end = run.finished_at if run.finished_at else time.time()
    wall = (run.wall_before or 0.0) + max(0.0, end - (run.started_at or run.created_at))
    return RunSummary(
        id=run.id, status=run.status, reason=run.reason, task=run.task, model=run.model,
        subagents=run.subagents, llm_calls=run.llm_calls, tool_calls=run.tool_calls,
        critical_steps=crit, total_steps=total, wall_seconds=round(wall, 3), tokens_in=run.tokens_in,
        tokens_out=run.tokens_out, result=run.result, created_at=run.created_at, finished_at=run.finished_at,
        max_subagents=run.max_subagents, max_tool_calls=run.max_tool_calls, tenant=run.tenant)
