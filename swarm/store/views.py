"""Read models for the CLI, the API and live views. Read-only queries; part of the state store,
each taking the store's :class:`~swarm.store.session.Session`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, case, func, select, text

from swarm.constants import ORCHESTRATION_TOOLS
from swarm.domain import liveness, pricing, run_ids
from swarm.domain.critical import AgentSteps, critical_steps, total_steps
from swarm.domain.status import RunStatus, StepKind, StepStatus
from swarm.store import step_stats, writes
from swarm.store.liveness import run_states
from swarm.store.session import Session
from swarm.store.tables import AGENTS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.types import RunSummary, StepRef

#: Which steps are an agent's ``tool_calls`` — the same definition as the run's ``tool_calls``
#: counter (granted in ``commits._open_tool_steps``) and the ``tools_granted`` that `swarm watch`
#: adds up from ``llm_done`` events: a call of a tool other than the orchestration tools that
#: the turn granted (a refused call stores no ``call_key``). See docs/architecture.md, "Counts".
COUNTED_TOOL_CALL = (
    STEPS.c.kind == StepKind.TOOL,
    STEPS.c.tool_name.not_in(sorted(ORCHESTRATION_TOOLS)),
    STEPS.c.call_key.is_not(None),
)


class Views:
    """Runs, agents, steps and events as the CLI and the API show them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def run_summary(self, run_id: str, tenant: str | None = None) -> RunSummary:
        with self.session.read() as conn:
            run = self._run_row(conn, run_id, tenant)
            live = run.status == RunStatus.RUNNING or run.critical_steps is None
            crit, total = self._live_steps(conn, run_id) if live else (run.critical_steps, run.total_steps)
            forks = list(
                conn.execute(
                    select(RUNS.c.id).where(RUNS.c.forked_from_run_id == run_id).order_by(RUNS.c.created_at)
                ).scalars()
            )
            states = run_states(conn, [run])
        return _summary(run, crit, total, states.get(run.id)).model_copy(update={"forks": forks})

    def list_runs(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        id_prefix: str | None = None,
    ) -> list[RunSummary]:
        """Newest first. ``status`` filters on the stored status; ``state`` on what readers are
        shown (``domain/liveness.RunState``, what `swarm ls --status` means): ``running`` and
        ``interrupted`` are both stored ``running`` and told apart after the read, over the
        running runs only (as many as run at once), before the page is cut."""
        status = state or status
        derived = state in liveness.DERIVED
        with self.session.read() as conn:
            q = select(RUNS).order_by(RUNS.c.created_at.desc())
            if not derived:
                q = q.limit(limit).offset(offset)
            if tenant is not None:
                q = q.where(RUNS.c.tenant == tenant)
            if status:
                q = q.where(RUNS.c.status == (RunStatus.RUNNING if derived else status))
            if id_prefix:  # a run id typed short: the primary key's index serves the range
                q = q.where(RUNS.c.id.startswith(id_prefix, autoescape=True))
            rows = conn.execute(q).all()
            states = run_states(conn, rows)
        if derived:
            rows = [r for r in rows if states[r.id][0] == status][offset : offset + limit]
        return [_summary(r, r.critical_steps or 0, r.total_steps or r.llm_calls, states.get(r.id)) for r in rows]

    def run_state(self, run_id: str) -> str:
        """The run's display state (``domain/liveness.py``): what a follower checks, now and then,
        while no event comes, to stop following a run nobody works on any more."""
        with self.session.read() as conn:
            run = conn.execute(
                select(RUNS.c.id, RUNS.c.status, RUNS.c.owner_until).where(RUNS.c.id == run_id)
            ).one_or_none()
            if run is None:
                raise run_ids.not_found(run_id)
            state = run_states(conn, [run]).get(run_id)
        return state[0] if state else str(run.status)

    def agent_tree(self, run_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every agent of a run with its status and counts, parents before children."""
        with self.session.read() as conn:
            self._run_row(conn, run_id, tenant)
            agents = conn.execute(select(AGENTS).where(AGENTS.c.run_id == run_id).order_by(AGENTS.c.created_at)).all()
            tools: dict[str, int] = dict(
                conn.execute(
                    select(STEPS.c.agent_id, func.count())
                    .where(STEPS.c.run_id == run_id, *COUNTED_TOOL_CALL)
                    .group_by(STEPS.c.agent_id)
                ).all()
            )
        return [
            {
                "id": a.id,
                "parent_id": a.parent_id,
                "name": a.name,
                "depth": a.depth,
                "status": a.status,
                "reason": a.reason,
                "steps": a.steps,
                "tool_calls": int(tools.get(a.id, 0)),
                "tokens_in": a.tokens_in,
                "tokens_out": a.tokens_out,
                "tokens_cached": a.tokens_cached,
                "cost_usd": pricing.usd(a.cost_pico),
                "parent_turn": a.parent_turn,
                "created_at": a.created_at,
                "finished_at": a.finished_at,
                "result": (a.result or "")[:2000] or None,
            }
            for a in agents
        ]

    def agent_counts(self, run_id: str) -> dict[str, int]:
        """How many agents of a run are in each status (cheap enough to poll)."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(AGENTS.c.status, func.count()).where(AGENTS.c.run_id == run_id).group_by(AGENTS.c.status)
            ).all()
        return {str(status): int(n) for status, n in rows}

    def events_since(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        with self.session.read() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.run_id == run_id, EVENTS.c.id > after_id)
                .order_by(EVENTS.c.id)
                .limit(limit)
            ).all()
        return [
            {"id": e.id, "ts": e.ts, "type": e.type, "agent_id": e.agent_id, "step_id": e.step_id, "data": e.data}
            for e in rows
        ]

    def steps_timeline(self, run_id: str) -> list[dict[str, Any]]:
        with self.session.read() as conn:
            rows = conn.execute(
                select(
                    STEPS.c.id,
                    STEPS.c.agent_id,
                    STEPS.c.kind,
                    STEPS.c.status,
                    STEPS.c.turn,
                    STEPS.c.idx,
                    STEPS.c.tool_name,
                    STEPS.c.started_at,
                    STEPS.c.finished_at,
                    STEPS.c.attempt,
                    STEPS.c.tokens_in,
                    STEPS.c.tokens_out,
                    STEPS.c.tokens_cached,
                    STEPS.c.cost_pico,
                    STEPS.c.is_error,
                )
                .where(STEPS.c.run_id == run_id)
                .order_by(STEPS.c.started_at)
            ).all()
        return [_timeline_step(r) for r in rows]

    def steps_of(self, run_id: str, statuses: Sequence[StepStatus] | None = None) -> list[StepRef]:
        with self.session.read() as conn:
            q = select(*writes.REF_COLS).where(STEPS.c.run_id == run_id)
            if statuses:
                q = q.where(STEPS.c.status.in_(list(statuses)))
            return writes.refs(conn.execute(q))

    def storage_rows(self, run_id: str) -> dict[str, int]:
        """Row counts per table for one run: proves storage grows linearly with work."""
        tables: dict[str, Any] = {"messages": MESSAGES, "steps": STEPS, "events": EVENTS, "agents": AGENTS}
        with self.session.read() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())
                for name, t in tables.items()
            }

    def _run_row(self, conn: Connection, run_id: str, tenant: str | None) -> Any:
        q = select(RUNS).where(RUNS.c.id == run_id)
        if tenant is not None:
            q = q.where(RUNS.c.tenant == tenant)
        run = conn.execute(q).first()
        if run is None:
            raise run_ids.not_found(run_id)
        return run

    def _live_steps(self, conn: Connection, run_id: str) -> tuple[int, int]:
        agents = [
            AgentSteps(a.id, a.parent_id, a.parent_turn, a.steps)
            for a in conn.execute(
                select(AGENTS.c.id, AGENTS.c.parent_id, AGENTS.c.parent_turn, AGENTS.c.steps).where(
                    AGENTS.c.run_id == run_id
                )
            )
        ]
        return critical_steps(agents), total_steps(agents)


def _timeline_step(r: Any) -> dict[str, Any]:
    step = dict(r._mapping)
    step["cost_usd"] = pricing.usd(step.pop("cost_pico"))
    return step


def _summary(run: Any, crit: int, total: int, state: tuple[str, bool] | None = None) -> RunSummary:
    end = run.finished_at if run.finished_at else time.time()
    wall = (run.wall_before or 0.0) + max(0.0, end - (run.started_at or run.created_at))
    return RunSummary(
        id=run.id,
        status=run.status,
        reason=run.reason,
        task=run.task,
        model=run.model,
        subagents=run.subagents,
        llm_calls=run.llm_calls,
        tool_calls=run.tool_calls,
        critical_steps=crit,
        total_steps=total,
        wall_seconds=round(wall, 3),
        tokens_in=run.tokens_in,
        tokens_out=run.tokens_out,
        tokens_cached=run.tokens_cached,
        cost_usd=pricing.usd(run.cost_pico),
        result=run.result,
        created_at=run.created_at,
        finished_at=run.finished_at,
        max_subagents=run.max_subagents,
        max_tool_calls=run.max_tool_calls,
        tenant=run.tenant,
        max_usd=pricing.usd(run.max_cost_pico),
        max_tokens=run.max_tokens,
        approve_tools=list(run.approve_tools or []),
        forked_from_run_id=run.forked_from_run_id,
        forked_at_step_id=run.forked_at_step_id,
        state=state[0] if state else run.status,
        hint=liveness.hint(state[0], run.id, owned=state[1]) if state else None,
    )


# --------------------------------------------------------------------------- live views (API)


class LiveViews:
    """Event-stream and metrics reads, for the REST API, the event stream and /metrics."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def events_after(self, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Events of ALL runs with id > ``after_id``, in id order: the event stream's gap check
        needs the global sequence, because ids of other runs' events sit between a run's own."""
        with self.session.read() as conn:
            rows = conn.execute(select(EVENTS).where(EVENTS.c.id > after_id).order_by(EVENTS.c.id).limit(limit)).all()
        return [_event_dict(e) for e in rows]

    def run_events_between(self, run_id: str, after_id: int, upto_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """A run's events with ``after_id < id <= upto_id``, in id order (catch-up of a stream)."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(EVENTS)
                .where(EVENTS.c.run_id == run_id, EVENTS.c.id > after_id, EVENTS.c.id <= upto_id)
                .order_by(EVENTS.c.id)
                .limit(limit)
            ).all()
        return [_event_dict(e) for e in rows]

    def xid_snapshot(self) -> tuple[int, int | None] | None:
        """PostgreSQL's writers in progress right now: (xmin, the newest in-progress transaction id
        or None). Every transaction id below xmin has ended. None on other databases."""
        with self.session.read() as conn:
            if conn.dialect.name != "postgresql":
                return None
            xmin, xip_max = conn.execute(
                text(
                    "SELECT pg_snapshot_xmin(s)::text, (SELECT max(x::text::numeric) FROM pg_snapshot_xip(s) AS x)"
                    " FROM pg_current_snapshot() AS s"
                )
            ).one()
        return int(xmin), None if xip_max is None else int(xip_max)

    def recent_event_heads(self, limit: int = 5000) -> list[tuple[int, float]]:
        """(id, ts) of the newest events, newest first: where a new event follower may start."""
        with self.session.read() as conn:
            return [
                (int(i), float(t))
                for i, t in conn.execute(
                    select(EVENTS.c.id, EVENTS.c.ts).order_by(EVENTS.c.id.desc()).limit(limit)
                ).all()
            ]

    def last_run_event_id(self, run_id: str) -> int:
        with self.session.read() as conn:
            return int(conn.execute(select(func.max(EVENTS.c.id)).where(EVENTS.c.run_id == run_id)).scalar() or 0)

    def run_status(self, run_id: str, tenant: str | None = None) -> str:
        """Just the status (what waiting loops poll; a summary computes critical steps), and a
        tenancy check when ``tenant`` is given (NotFound for another tenant's run)."""
        with self.session.read() as conn:
            q = select(RUNS.c.status).where(RUNS.c.id == run_id)
            if tenant is not None:
                q = q.where(RUNS.c.tenant == tenant)
            status = conn.execute(q).scalar()
        if status is None:
            raise run_ids.not_found(run_id)
        return str(status)

    def metrics_snapshot(self) -> dict[str, Any]:
        """Aggregates for /metrics: runs by status with their token and cost sums (one grouped
        query over runs), agents running, and the step figures (``store/step_stats.py``: the
        finished runs' totals plus the steps of running runs, never a scan of every step)."""
        with self.session.read() as conn:
            runs = conn.execute(
                select(
                    RUNS.c.status,
                    func.count(),
                    func.coalesce(func.sum(RUNS.c.tokens_in), 0),
                    func.coalesce(func.sum(RUNS.c.tokens_out), 0),
                    func.coalesce(func.sum(RUNS.c.tokens_cached), 0),
                    func.coalesce(func.sum(RUNS.c.cost_pico), 0),
                    func.count(case((RUNS.c.cost_pico.is_(None), 1))),
                ).group_by(RUNS.c.status)
            ).all()
            active_agents = conn.execute(
                select(func.count())
                .select_from(AGENTS)
                .join(RUNS, RUNS.c.id == AGENTS.c.run_id)
                .where(RUNS.c.status == "running", AGENTS.c.status == "running")
            ).scalar_one()
            figures = step_stats.snapshot(conn)
        return {
            "runs": {str(r[0]): int(r[1]) for r in runs},
            "tokens_in": sum(int(r[2]) for r in runs),
            "tokens_out": sum(int(r[3]) for r in runs),
            "tokens_cached": sum(int(r[4]) for r in runs),
            "cost_usd": pricing.usd(sum(int(r[5]) for r in runs)),
            "unpriced_runs": sum(int(r[6]) for r in runs),
            "active_agents": int(active_agents),
            "steps": step_stats.step_counts(figures),
            "step_latency": step_stats.histograms(figures, "duration"),
            "queue_wait": step_stats.histograms(figures, "wait"),
        }


def _event_dict(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "run_id": e.run_id,
        "ts": e.ts,
        "type": e.type,
        "agent_id": e.agent_id,
        "step_id": e.step_id,
        "data": e.data,
    }
