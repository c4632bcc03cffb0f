"""StateStore: every write swarm makes, each an intention-revealing transaction.

Concurrency rules, which all methods follow:

* A step is claimed by a conditional UPDATE that bumps its fencing token; its commit is an UPDATE
  guarded by that token. Two workers racing for one step: one claim wins; a presumed-dead worker's
  late commit matches 0 rows and raises :class:`FenceLost`, rolling its whole transaction back.
* A step's result, the messages it adds and the steps it makes ready commit in ONE transaction;
  the caller dispatches the returned :class:`StepRef` s only after that commit.
* Budgets are granted under the run row's lock; fan-in decrements the agent's counter atomically.
* Lock order is run → step → agent, everywhere, so transactions cannot deadlock each other.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from swarm.constants import ASSIGN_TASK, MAX_STEP_ATTEMPTS, ORCHESTRATION_TOOLS
from swarm.domain import limits, prompts, sanitize
from swarm.domain.critical import AgentSteps, critical_steps, total_steps
from swarm.domain.llm import LLMResponse
from swarm.domain.status import (
    AgentStatus,
    RunStatus,
    StepKind,
    StepStatus,
    check_run_move,
)
from swarm.domain.turns import TurnKind, TurnPlan
from swarm.domain.workspace import Changes
from swarm.exceptions import FenceLost, NotFound, StateError, StoreConflict, StoreDataError, StoreUnavailable
from swarm.store import artifacts, conversation
from swarm.store import statements as sql
from swarm.store.db import WriteGate, db_now, make_engine
from swarm.store.export import ExportMixin
from swarm.store.keys import KeysMixin
from swarm.store.models import AGENTS, DEFS, RUNS, STEPS
from swarm.store.types import AgentContext, AgentLimits, ArtifactInfo, Claim, RunSpec, StepRef
from swarm.store.views import LiveViewsMixin, ViewsMixin

OPEN = (StepStatus.READY, StepStatus.RUNNING, StepStatus.WAITING)
REF_COLS = (STEPS.c.id, STEPS.c.run_id, STEPS.c.agent_id, STEPS.c.kind, STEPS.c.tool_name)
#: What :meth:`StateStore._give_up` needs of a step.
GIVE_UP_COLS = (STEPS.c.id, STEPS.c.run_id, STEPS.c.agent_id, STEPS.c.kind, STEPS.c.status, STEPS.c.fence,
                STEPS.c.attempt, STEPS.c.tool_name)


def new_id() -> str:
    return uuid.uuid4().hex


def owner_id() -> str:
    """Who holds a lease: host and pid let a same-host supervisor see that the holder is dead."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StateStore(ViewsMixin, LiveViewsMixin, KeysMixin, ExportMixin):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._gate = WriteGate(engine)
        # Single statements need no transaction around them: on PostgreSQL (READ COMMITTED, one
        # snapshot per statement anyway) autocommit saves the BEGIN and COMMIT/ROLLBACK round
        # trips of every claim and read. SQLite keeps transactions so writes stay behind the gate.
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else None
        self._files = artifacts.Reads(self.read)

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> StateStore:
        return cls(make_engine(url, pool_size=pool_size))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One write transaction; database connectivity errors become :class:`StoreUnavailable`."""
        with self._gate, _translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with _translated(), (self._auto or self.engine).connect() as conn:
            yield conn

    @contextmanager
    def _single(self) -> Iterator[Connection]:
        """For one atomic write statement: autocommit where available, else a transaction."""
        if self._auto is None:
            with self.tx() as conn:
                yield conn
        else:
            with _translated(), self._auto.connect() as conn:
                yield conn

    # ------------------------------------------------------------------ runs

    def create_run(self, spec: RunSpec) -> tuple[str, list[StepRef]]:
        run_id, orch_id, now = new_id(), new_id(), time.time()
        with self.tx() as conn:
            conn.execute(insert(RUNS).values(
                id=run_id, tenant=spec.tenant, task=sanitize.text(spec.task), status=RunStatus.RUNNING,
                model=spec.model,
                max_subagents=spec.max_subagents, max_tool_calls=spec.max_tool_calls,
                max_steps_per_agent=spec.max_steps_per_agent, max_wall_seconds=spec.max_wall_seconds,
                max_depth=spec.max_depth, subagents=0, tool_calls=0, llm_calls=0, tokens_in=0,
                tokens_out=0, created_at=now, started_at=now, wall_before=0.0,
                deadline=db_now() + spec.max_wall_seconds))
            conn.execute(insert(AGENTS).values(
                id=orch_id, run_id=run_id, parent_id=None, parent_step_id=None, parent_turn=None,
                name="orchestrator", depth=0, status=AgentStatus.RUNNING, steps=0, next_seq=2,
                pending_tools=0, tokens_in=0, tokens_out=0, created_at=now))
            system = prompts.ORCHESTRATOR_SYSTEM.format(
                max_subagents=spec.max_subagents, max_tool_calls=spec.max_tool_calls,
                max_steps=spec.max_steps_per_agent)
            self._message(conn, run_id, orch_id, 0, "system", system)
            self._message(conn, run_id, orch_id, 1, "user", conversation.user_content(spec.task, spec.attachments))
            for att in spec.attachments:  # named as user_content names them to the model
                artifacts.put(conn, self.dialect, run_id, sanitize.text(att.name), att.data)
            ref = self._new_llm_step(conn, run_id, orch_id, 0)
            self._event(conn, run_id, "run_created", orch_id, None, {"task": sanitize.text(spec.task[:500])})
        return run_id, [ref]

    def cancel_run(self, run_id: str, reason: str = "cancelled by user") -> bool:
        """Cancel a run: every open step is cancelled in the same transaction, so no worker can
        commit (fence) or start (claim checks the run) anything of it afterwards."""
        for attempt in range(5):
            try:
                return self._cancel_run(run_id, reason)
            except StoreConflict:  # lost a deadlock against a committing step: just try again
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _cancel_run(self, run_id: str, reason: str) -> bool:
        with self.tx() as conn:
            run = self._lock_run(conn, run_id)
            if run.status != RunStatus.RUNNING:
                return False
            self._finish_run(conn, run_id, RunStatus.CANCELLED, None, reason)
            return True

    def resume_run(self, run_id: str) -> list[StepRef]:
        """Re-open a failed, cancelled or interrupted run; returns the steps to dispatch.
        Everything committed stays: only steps that never finished run again."""
        with self.tx() as conn:
            run = self._lock_run(conn, run_id)
            status = RunStatus(run.status)
            if status == RunStatus.SUCCEEDED:
                raise StateError(f"run {run_id} already succeeded; there is nothing to resume")
            if status in (RunStatus.FAILED, RunStatus.CANCELLED):
                check_run_move(status, RunStatus.RUNNING)
                self._reopen(conn, run)
            refs = self._ready_refs(conn, run_id)
            if not refs and not self._has_open_steps(conn, run_id):
                raise StateError(f"run {run_id} has no unfinished work to resume ({run.reason or status})")
            self._event(conn, run_id, "run_resumed", None, None, {})
            return refs

    def _reopen(self, conn: Connection, run: Any) -> None:
        agents = conn.execute(select(AGENTS.c.id, AGENTS.c.parent_step_id).where(
            AGENTS.c.run_id == run.id, AGENTS.c.status.in_([AgentStatus.FAILED, AgentStatus.CANCELLED]))).all()
        delivered = {sid for (sid,) in conn.execute(select(STEPS.c.id).where(
            STEPS.c.run_id == run.id, STEPS.c.status == StepStatus.SUCCEEDED,
            STEPS.c.tool_name == ASSIGN_TASK)).all()}
        reopen = [a.id for a in agents if a.parent_step_id is None or a.parent_step_id not in delivered]
        if reopen:
            conn.execute(update(AGENTS).where(AGENTS.c.id.in_(reopen)).values(
                status=AgentStatus.RUNNING, reason=None, finished_at=None))
            closed = and_(STEPS.c.agent_id.in_(reopen), STEPS.c.status.in_([StepStatus.FAILED, StepStatus.CANCELLED]))
            # An assign_task whose subagent exists goes back to waiting for it, never re-launches.
            conn.execute(update(STEPS).where(closed, STEPS.c.child_agent_id.is_not(None)).values(
                status=StepStatus.WAITING, owner=None, error=None))
            conn.execute(update(STEPS).where(closed).values(
                status=StepStatus.READY, owner=None, attempt=0, error=None, ready_at=db_now()))
        wall = (run.finished_at or time.time()) - (run.started_at or run.created_at)
        conn.execute(update(RUNS).where(RUNS.c.id == run.id).values(
            status=RunStatus.RUNNING, reason=None, finished_at=None, started_at=time.time(),
            wall_before=RUNS.c.wall_before + max(0.0, wall),
            deadline=db_now() + RUNS.c.max_wall_seconds))

    # ----------------------------------------------------------------- steps

    def claim(self, step_id: str, owner: str, lease: float,
              max_attempts: int = MAX_STEP_ATTEMPTS) -> Claim | None:
        """Take a step under a lease; None if it is not claimable (done, held, run not running)."""
        # A run past its deadline is not claimable either; the sweeper then ends it as failed.
        with self._single() as conn:
            row = conn.execute(sql.CLAIM, {"b_id": step_id, "b_max": max_attempts, "b_owner": owner,
                                           "b_lease": lease, "b_now": time.time()}).first()
            if row is None:
                return None
            return Claim(step_id, row.run_id, row.agent_id, StepKind(row.kind), row.fence, row.attempt,
                         row.turn, row.idx, owner, row.tool_name, row.tool_call_id, row.arguments,
                         bool(row.run_has_files), row.msg_seq, row.note,
                         _limits(row) if row.agent_name is not None else None)

    def heartbeat(self, owner: str, lease: float, steps: Collection[str] | None = None) -> int:
        """Renew the leases of every step this owner is running (only of ``steps``, if given: a
        step whose worker thread gave up must expire, or nobody would ever take it over)."""
        cond = [STEPS.c.owner == owner, STEPS.c.status == StepStatus.RUNNING]
        if steps is not None:
            if not steps:
                return 0
            cond.append(STEPS.c.id.in_(list(steps)))
        with self._single() as conn:
            res = conn.execute(update(STEPS).where(*cond).values(lease_until=db_now() + lease))
            return res.rowcount

    def still_claimed(self, claim: Claim) -> bool:
        """Whether this claim still holds its step (not cancelled, not taken over)."""
        with self.read() as conn:
            row = conn.execute(select(STEPS.c.status, STEPS.c.fence).where(STEPS.c.id == claim.step_id)).first()
        return row is not None and row.status == StepStatus.RUNNING and row.fence == claim.fence

    def release(self, claim: Claim) -> None:
        """Hand a step back untouched (e.g. on worker shutdown) so another worker can take it now."""
        with self._single() as conn:
            conn.execute(update(STEPS).where(STEPS.c.id == claim.step_id, STEPS.c.fence == claim.fence,
                                            STEPS.c.status == StepStatus.RUNNING)
                         .values(status=StepStatus.READY, owner=None, ready_at=db_now(),
                                 attempt=STEPS.c.attempt - 1))

    def agent_context(self, claim: Claim) -> AgentContext:
        with self.read() as conn:
            agent = claim.agent or _limits(conn.execute(sql.AGENT_AND_LIMITS, {"b_id": claim.agent_id}).one())
            rows = conn.execute(sql.MESSAGES_OF, {"b_id": claim.agent_id}).all()
        return AgentContext(claim.run_id, claim.agent_id, agent, [conversation.to_openai(r) for r in rows])

    def commit_llm(self, claim: Claim, response: LLMResponse, plan: TurnPlan) -> list[StepRef]:
        """Commit one model turn: the assistant message, its tool steps (budget permitting) or the
        agent's end, all in one transaction guarded by the fence.

        The run row (budgets, counters) is every agent's hot spot, so it is touched last, by a
        conditional UPDATE that re-checks the budget: the lock is held only for the commit itself.
        If the budget moved meanwhile the transaction is redone holding the lock from the start."""
        try:
            return self._commit_llm(claim, response, plan, optimistic=True)
        except _BudgetMoved:
            return self._commit_llm(claim, response, plan, optimistic=False)

    def _commit_llm(self, claim: Claim, response: LLMResponse, plan: TurnPlan, *, optimistic: bool) -> list[StepRef]:
        with self.tx() as conn:
            # Only a turn with tool calls needs the budgets; the pessimistic retry locks them first.
            run = None if optimistic else self._lock_run(conn, claim.run_id)
            granted = (0, 0)
            self._close_step(conn, claim, StepStatus.SUCCEEDED, tokens_in=response.tokens_in,
                             tokens_out=response.tokens_out)
            agent = conn.execute(sql.AGENT_COUNTERS, {"b_id": claim.agent_id}).one()
            seq = agent.next_seq
            self._message(conn, claim.run_id, claim.agent_id, seq, "assistant", response.content,
                          reasoning=response.reasoning_content,
                          tool_calls=conversation.tool_calls_json(response) or None)
            tokens = {"b_tin": response.tokens_in, "b_tout": response.tokens_out}
            advance = {"b_id": claim.agent_id, "b_next": seq + 1, "b_pending": agent.pending_tools, **tokens}
            refs: list[StepRef] = []
            if plan.kind == TurnKind.TOOLS:
                if run is None:
                    run = conn.execute(sql.RUN_BUDGETS, {"b_id": claim.run_id}).one()
                pending, refs, granted = self._open_tool_steps(conn, claim, run, plan, seq)
                conn.execute(sql.ADVANCE_AGENT, {**advance, "b_next": seq + 1 + len(plan.calls), "b_pending": pending})
                if pending == 0:
                    refs.append(self._new_llm_step(conn, claim.run_id, claim.agent_id, claim.turn + 1))
            elif plan.kind == TurnKind.NUDGE:
                self._message(conn, claim.run_id, claim.agent_id, seq + 1, "user", prompts.EMPTY_REPLY_NUDGE)
                conn.execute(sql.ADVANCE_AGENT, {**advance, "b_next": seq + 2})
                refs.append(self._new_llm_step(conn, claim.run_id, claim.agent_id, claim.turn + 1))
            else:
                conn.execute(sql.ADVANCE_AGENT, advance)
                if plan.kind == TurnKind.FINAL:
                    refs = self._finish_agent(conn, claim.agent_id, AgentStatus.SUCCEEDED, plan.final_text, None)
                else:
                    reason = prompts.STEP_LIMIT.format(steps=agent.steps + 1)
                    refs = self._finish_agent(conn, claim.agent_id, AgentStatus.FAILED, None, reason)
            self._event(conn, claim.run_id, "llm_done", claim.agent_id, claim.step_id,
                        {"turn": claim.turn, "kind": plan.kind.value, "tool_calls": len(plan.calls),
                         "tokens_in": response.tokens_in, "tokens_out": response.tokens_out})
            counted = conn.execute(sql.COUNT_TURN, {"b_id": claim.run_id, "b_tools": granted[0],
                                                    "b_subs": granted[1], **tokens}).rowcount
            if not counted:
                raise _BudgetMoved()
            return refs

    def _open_tool_steps(self, conn: Connection, claim: Claim, run: Any, plan: TurnPlan,
                         seq: int) -> tuple[int, list[StepRef], tuple[int, int]]:
        """Insert the turn's tool steps; returns (pending, refs, (tool calls, subagents) granted).
        The caller adds the grant to the run's counters."""
        valid = [c for c in plan.calls if c.error is None]
        want_tools = sum(1 for c in valid if c.name not in ORCHESTRATION_TOOLS)
        want_subs = sum(1 for c in valid if c.launches_subagent)
        g = limits.grant(want_tools, want_subs, used_tools=run.tool_calls, max_tools=run.max_tool_calls,
                         used_subagents=run.subagents, max_subagents=run.max_subagents)
        tools_left, subs_left = g.tool_calls, g.subagents
        note = (limits.budget_note(run.tool_calls + g.tool_calls, run.max_tool_calls, "tool calls")
                if want_tools else None)
        refs: list[StepRef] = []
        ready: list[dict[str, Any]] = []
        now = time.time()
        for c in plan.calls:
            error = c.error
            if error is None and c.launches_subagent:
                if subs_left > 0:
                    subs_left -= 1
                else:
                    error = limits.over_budget_message("subagents", run.max_subagents)
            elif error is None and c.name not in ORCHESTRATION_TOOLS:
                if tools_left > 0:
                    tools_left -= 1
                else:
                    error = limits.over_budget_message("tool calls", run.max_tool_calls)
            step_id, msg_seq = new_id(), seq + 1 + c.idx
            values = dict(id=step_id, run_id=claim.run_id, agent_id=claim.agent_id, kind=StepKind.TOOL,
                          turn=claim.turn, idx=c.idx, tool_name=c.name, tool_call_id=c.call_id,
                          arguments=c.arguments, msg_seq=msg_seq, attempt=0, fence=0)
            if error is None:
                ready.append({**values, "note": note})
                refs.append(StepRef(step_id, claim.run_id, claim.agent_id, StepKind.TOOL, c.name))
            else:
                conn.execute(sql.INSERT_STEP, {**values, "status": StepStatus.SUCCEEDED, "result": error,
                                               "is_error": True, "started_at": now, "finished_at": now})
                self._message(conn, claim.run_id, claim.agent_id, msg_seq, "tool", error, tool_call_id=c.call_id)
        if ready:
            conn.execute(sql.INSERT_READY_STEP, ready)  # one executemany for a whole fan-out
        return len(refs), refs, (g.tool_calls - tools_left, g.subagents - subs_left)

    def commit_tool(self, claim: Claim, content: str, is_error: bool,
                    changes: Changes | None = None) -> list[StepRef]:
        """Commit a tool call's result and the workspace files it changed (``changes``: read from
        disk one at a time inside the transaction, and kept only within the run's quota). A file
        that was not kept is named in the result, with the reason, for the model to read."""
        files = changes.files if changes is not None else {}
        if changes is not None and not files:
            content = changes.note_on(content)
        if self._auto is not None and not files and claim.msg_seq is not None:
            return self._commit_tool_at_once(claim, content, is_error)
        with self.tx() as conn:
            if changes is not None and files:
                content = changes.note_on(content, artifacts.save(conn, self.dialect, claim.run_id, changes))
            refs = self._deliver(conn, claim.step_id, content, is_error, StepStatus.RUNNING, claim.fence)
            self._event(conn, claim.run_id, "tool_done", claim.agent_id, claim.step_id,
                        {"tool": claim.tool_name, "error": is_error})
            return refs

    def _commit_tool_at_once(self, claim: Claim, content: str, is_error: bool) -> list[StepRef]:
        """What commit_tool's transaction does, as one autocommit statement (PostgreSQL): the
        commit of most tool steps costs one round trip instead of seven."""
        next_id = new_id()
        with self._single() as conn:
            row = conn.execute(sql.COMMIT_TOOL, {
                "b_id": claim.step_id, "b_fence": claim.fence, "b_result": content, "b_error": is_error,
                "b_now": time.time(), "b_run": claim.run_id, "b_agent": claim.agent_id, "b_seq": claim.msg_seq,
                "b_content": _with_note(content, claim.note),
                "b_tcid": claim.tool_call_id, "b_data": {"tool": claim.tool_name, "error": is_error},
                "b_new": next_id, "b_next_turn": claim.turn + 1}).one()
        if not row.delivered:
            raise FenceLost(f"step {claim.step_id} was taken over or cancelled; result discarded")
        return [StepRef(next_id, claim.run_id, claim.agent_id, StepKind.LLM)] if row.next_step_id else []

    def create_subagent(self, claim: Claim, name: str, system_prompt: str) -> list[StepRef]:
        """``create_subagent``: record the subagent type; the result goes straight to the model."""
        with self.tx() as conn:
            taken = conn.execute(select(DEFS.c.id).where(DEFS.c.run_id == claim.run_id,
                                                           DEFS.c.name == name)).first()
            if taken:
                return self._deliver(conn, claim.step_id, prompts.AGENT_EXISTS.format(name=name), True,
                                     StepStatus.RUNNING, claim.fence)
            conn.execute(insert(DEFS).values(run_id=claim.run_id, name=name, system_prompt=system_prompt,
                                                 created_by=claim.agent_id, created_at=time.time()))
            self._event(conn, claim.run_id, "subagent_defined", claim.agent_id, claim.step_id, {"name": name})
            text = prompts.AGENT_CREATED.format(name=name)
            return self._deliver(conn, claim.step_id, text, False, StepStatus.RUNNING, claim.fence)

    def launch_subagent(self, claim: Claim, agent_name: str, prompt: str) -> list[StepRef]:
        """``assign_task``: start a subagent instance. The step then waits without holding a worker;
        the subagent's final message becomes its result (fan-in happens in :meth:`_finish_agent`)."""
        with self.tx() as conn:
            run = conn.execute(select(RUNS.c.max_depth, RUNS.c.max_steps_per_agent)
                               .where(RUNS.c.id == claim.run_id)).one()
            parent = conn.execute(select(AGENTS.c.depth).where(AGENTS.c.id == claim.agent_id)).one()
            adef = conn.execute(select(DEFS).where(DEFS.c.run_id == claim.run_id,
                                                       DEFS.c.name == agent_name)).first()
            refusal = None
            if parent.depth + 1 > run.max_depth:
                refusal = prompts.DEPTH_LIMIT.format(max_depth=run.max_depth)
            elif adef is None:
                names = [n for (n,) in conn.execute(select(DEFS.c.name).where(DEFS.c.run_id == claim.run_id))]
                refusal = prompts.UNKNOWN_AGENT.format(name=agent_name, available=", ".join(names) or "(none yet)")
            if refusal is not None or adef is None:
                # The launch was granted budget when the turn was committed; nothing launched, so give it back.
                self._lock_run(conn, claim.run_id)
                conn.execute(update(RUNS).where(RUNS.c.id == claim.run_id).values(subagents=RUNS.c.subagents - 1))
                return self._deliver(conn, claim.step_id, refusal or "", True, StepStatus.RUNNING, claim.fence)
            child_id = new_id()
            self._close_step(conn, claim, StepStatus.WAITING, child_agent_id=child_id)
            conn.execute(insert(AGENTS).values(
                id=child_id, run_id=claim.run_id, parent_id=claim.agent_id, parent_step_id=claim.step_id,
                parent_turn=claim.turn, name=adef.name, depth=parent.depth + 1, status=AgentStatus.RUNNING,
                steps=0, next_seq=2, pending_tools=0, tokens_in=0, tokens_out=0, created_at=time.time()))
            self._message(conn, claim.run_id, child_id, 0, "system",
                          prompts.subagent_system(adef.system_prompt, run.max_steps_per_agent))
            self._message(conn, claim.run_id, child_id, 1, "user", prompt)
            self._event(conn, claim.run_id, "agent_started", child_id, claim.step_id,
                        {"name": adef.name, "parent_id": claim.agent_id})
            return [self._new_llm_step(conn, claim.run_id, child_id, 0)]

    def fail_step(self, claim: Claim, error: str, *, fail_run: bool = False) -> list[StepRef]:
        """A step failed for good. Its agent fails (the parent hears of it as a tool error); with
        ``fail_run`` (bad credentials, no quota) the whole run ends at once."""
        error = sanitize.text(error)  # it may quote what the model or a tool sent
        with self.tx() as conn:
            self._lock_run(conn, claim.run_id)
            self._close_step(conn, claim, StepStatus.FAILED, error=error)
            self._event(conn, claim.run_id, "step_failed", claim.agent_id, claim.step_id, {"error": error[:500]})
            if fail_run:
                self._finish_run(conn, claim.run_id, RunStatus.FAILED, None, error)
                return []
            return self._finish_agent(conn, claim.agent_id, AgentStatus.FAILED, None, error)

    # ---------------------------------------------------------------- sweeper

    def sweep(self, republish_after: float, max_attempts: int = MAX_STEP_ATTEMPTS,
              run_ids: Collection[str] | None = None) -> list[StepRef]:
        """Find work that is stuck and return it for re-dispatch: steps whose lease expired (their
        worker died), ready steps never started (lost publish, Redis flushed), overdue runs.

        A step may be claimed ``max_attempts`` times (SWARM_STEP_MAX_CRASHES). A claim ends in a
        commit, a failure or a release, or else its lease expires because its worker is gone: an
        expired step that has used every attempt crashed its worker that many times (a poison
        step) and is given up (:meth:`_give_up`) instead of being handed to the next worker to
        kill. A ready step with no attempt left (nobody could claim it) is given up too.
        ``run_ids`` limits the sweep to those runs (the embedded mode sweeps only its own)."""
        refs: list[StepRef] = []
        if run_ids is not None and not run_ids:
            return refs
        mine = [STEPS.c.run_id.in_(list(run_ids))] if run_ids is not None else []
        with self.tx() as conn:
            overdue = select(RUNS.c.id).where(RUNS.c.status == RunStatus.RUNNING, RUNS.c.deadline < db_now())
            if run_ids is not None:
                overdue = overdue.where(RUNS.c.id.in_(list(run_ids)))
            for (run_id,) in conn.execute(overdue).all():
                self._lock_run(conn, run_id)
                self._finish_run(conn, run_id, RunStatus.FAILED, None, prompts.TIME_LIMIT)
            expired = and_(*mine, STEPS.c.status == StepStatus.RUNNING, STEPS.c.lease_until < db_now())
            crashed = conn.execute(select(*GIVE_UP_COLS).where(expired, STEPS.c.attempt >= max_attempts)).all()
            rows = conn.execute(update(STEPS).where(expired, STEPS.c.attempt < max_attempts)
                                .values(status=StepStatus.READY, owner=None, ready_at=db_now())
                                .returning(*REF_COLS)).all()
            refs += _refs(rows)
            stale = and_(*mine, STEPS.c.status == StepStatus.READY, STEPS.c.ready_at < db_now() - republish_after)
            exhausted = conn.execute(select(*GIVE_UP_COLS).where(stale, STEPS.c.attempt >= max_attempts)).all()
            rows = conn.execute(update(STEPS).where(stale, STEPS.c.attempt < max_attempts)
                                .values(ready_at=db_now())
                                .returning(*REF_COLS)).all()
            refs += _refs(rows)
        for row in crashed:
            refs += self._give_up(row, prompts.crashed_reason(row.attempt), crashed=True)
        for row in exhausted:
            refs += self._give_up(row, prompts.ATTEMPTS_USED.format(times=row.attempt),
                                  crashed=False)
        return refs

    def _give_up(self, row: Any, reason: str, *, crashed: bool) -> list[StepRef]:
        """End a step (a row of GIVE_UP_COLS) that must not run again. A tool call's result
        becomes a tool error saying why, so the model hears of it and the run goes on; an LLM
        step fails, and its agent with it (a subagent's parent hears of that as a tool error)."""
        try:
            with self.tx() as conn:
                self._lock_run(conn, row.run_id)
                if row.kind == StepKind.TOOL:
                    text = (prompts.TOOL_CRASHED.format(name=row.tool_name, times=row.attempt) if crashed
                            else prompts.TOOL_NOT_RUN.format(name=row.tool_name, reason=reason))
                    refs = self._deliver(conn, row.id, text, True, StepStatus(row.status), row.fence)
                    conn.execute(update(STEPS).where(STEPS.c.id == row.id).values(error=reason))
                    self._event(conn, row.run_id, "tool_done", row.agent_id, row.id,
                                {"tool": row.tool_name, "error": True, "reason": reason})
                    return refs
                n = conn.execute(update(STEPS).where(STEPS.c.id == row.id, STEPS.c.fence == row.fence,
                                                    STEPS.c.status == row.status)
                                 .values(status=StepStatus.FAILED, owner=None, finished_at=time.time(),
                                         error=reason)).rowcount
                if not n:
                    return []  # somebody finished it (or the run ended) after all
                self._event(conn, row.run_id, "step_failed", row.agent_id, row.id, {"error": reason})
                return self._finish_agent(conn, row.agent_id, AgentStatus.FAILED, None, reason)
        except FenceLost:
            return []  # somebody finished it (or the run ended) after all

    def release_dead_owners(self, run_id: str, is_dead: Callable[[str], bool],
                            max_attempts: int = MAX_STEP_ATTEMPTS) -> int:
        """Free steps held by owners known to be dead (same-host pid check) without waiting for
        their leases to expire: what `swarm resume` does after a kill -9 of `swarm run`, and the
        server on start for the runs it adopts. A step whose dead owner held its last attempt
        crashed its worker ``max_attempts`` times and is given up, as :meth:`sweep` does: code
        that kills the server is not run again on every start. Returns how many steps were freed."""
        with self.tx() as conn:
            owners = {o for (o,) in conn.execute(select(STEPS.c.owner).distinct().where(
                STEPS.c.run_id == run_id, STEPS.c.status == StepStatus.RUNNING)) if o}
            gone = [o for o in owners if is_dead(o)]
            if not gone:
                return 0
            held = and_(STEPS.c.run_id == run_id, STEPS.c.status == StepStatus.RUNNING, STEPS.c.owner.in_(gone))
            crashed = conn.execute(select(*GIVE_UP_COLS).where(held, STEPS.c.attempt >= max_attempts)).all()
            freed = conn.execute(update(STEPS).where(held, STEPS.c.attempt < max_attempts)
                                 .values(status=StepStatus.READY, owner=None, ready_at=db_now())).rowcount
        for row in crashed:
            self._give_up(row, prompts.crashed_reason(row.attempt), crashed=True)
        return freed

    # --------------------------------------------------------------- helpers

    def _lock_run(self, conn: Connection, run_id: str) -> Any:
        row = conn.execute(sql.LOCK_RUN, {"b_id": run_id}).first()
        if row is None:
            raise NotFound(f"no run {run_id}")
        return row

    def _close_step(self, conn: Connection, claim: Claim, status: StepStatus, **values: Any) -> None:
        if status == StepStatus.SUCCEEDED and set(values) <= {"tokens_in", "tokens_out"}:
            # The per-LLM-step case, as a prebuilt statement.
            n = conn.execute(sql.CLOSE_STEP, {"b_id": claim.step_id, "b_fence": claim.fence, "b_status": status,
                                              "b_now": time.time(), "b_tin": values.get("tokens_in", 0),
                                              "b_tout": values.get("tokens_out", 0)}).rowcount
        else:
            if status in (StepStatus.SUCCEEDED, StepStatus.FAILED):
                values["finished_at"] = time.time()
            n = conn.execute(update(STEPS).where(STEPS.c.id == claim.step_id, STEPS.c.fence == claim.fence,
                                                STEPS.c.status == StepStatus.RUNNING)
                             .values(status=status, **values)).rowcount
        if n != 1:
            raise FenceLost(f"step {claim.step_id} was taken over or cancelled; result discarded")

    def _deliver(self, conn: Connection, step_id: str, content: str, is_error: bool,
                 expected: StepStatus, fence: int | None) -> list[StepRef]:
        """Give a tool step its result: the tool message, and — when it was the turn's last
        outstanding call — the agent's next LLM step (fan-in)."""
        row = conn.execute(sql.DELIVER, {"b_id": step_id, "b_expected": expected, "b_fence": fence,
                                         "b_result": content, "b_error": is_error, "b_now": time.time()}).first()
        if row is None:
            raise FenceLost(f"step {step_id} was taken over or cancelled; result discarded")
        self._message(conn, row.run_id, row.agent_id, row.msg_seq, "tool", _with_note(content, row.note),
                      tool_call_id=row.tool_call_id)
        left = conn.execute(sql.FAN_IN, {"b_id": row.agent_id}).first()
        if left is not None and left.pending_tools == 0:
            return [self._new_llm_step(conn, row.run_id, row.agent_id, row.turn + 1)]
        return []

    def _finish_agent(self, conn: Connection, agent_id: str, status: AgentStatus, result: str | None,
                      reason: str | None) -> list[StepRef]:
        agent = conn.execute(update(AGENTS).where(AGENTS.c.id == agent_id, AGENTS.c.status == AgentStatus.RUNNING)
                             .values(status=status, result=result, reason=reason, finished_at=time.time())
                             .returning(AGENTS.c.run_id, AGENTS.c.parent_step_id, AGENTS.c.name)).first()
        if agent is None:
            return []
        self._event(conn, agent.run_id, "agent_done", agent_id, None,
                    {"status": status.value, "reason": reason})
        if agent.parent_step_id is None:
            run_status = RunStatus.SUCCEEDED if status == AgentStatus.SUCCEEDED else RunStatus.FAILED
            self._finish_run(conn, agent.run_id, run_status, result, reason)
            return []
        if status == AgentStatus.SUCCEEDED:
            return self._deliver(conn, agent.parent_step_id, result or "", False, StepStatus.WAITING, None)
        text = prompts.SUBAGENT_FAILED.format(name=agent.name, reason=reason)
        try:
            return self._deliver(conn, agent.parent_step_id, text, True, StepStatus.WAITING, None)
        except FenceLost:
            return []  # the parent is gone (cancelled): nobody to tell

    def _finish_run(self, conn: Connection, run_id: str, status: RunStatus, result: str | None,
                    reason: str | None) -> None:
        agents = [AgentSteps(a.id, a.parent_id, a.parent_turn, a.steps) for a in conn.execute(
            select(AGENTS.c.id, AGENTS.c.parent_id, AGENTS.c.parent_turn, AGENTS.c.steps)
            .where(AGENTS.c.run_id == run_id))]
        n = conn.execute(update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == RunStatus.RUNNING).values(
            status=status, result=result, reason=reason, finished_at=time.time(),
            critical_steps=critical_steps(agents), total_steps=total_steps(agents))).rowcount
        if not n:
            return
        if status != RunStatus.SUCCEEDED:
            # Steps, agents, then steps again. Every commit in flight on this run holds its own
            # step's row lock, so the first UPDATE waits for each of them to commit (or to find
            # its step cancelled, if we got there first). What they created meanwhile (a child
            # agent, the next step of a fan-in) is invisible to that statement's snapshot but not
            # to the later statements' (READ COMMITTED): without them it stayed RUNNING / READY
            # in a cancelled run, and a resume would have run it next to the step it creates.
            cancel_steps = (update(STEPS).where(STEPS.c.run_id == run_id, STEPS.c.status.in_(OPEN))
                            .values(status=StepStatus.CANCELLED, owner=None, error=reason))
            conn.execute(cancel_steps)
            conn.execute(update(AGENTS).where(AGENTS.c.run_id == run_id, AGENTS.c.status == AgentStatus.RUNNING)
                         .values(status=AgentStatus.CANCELLED if status == RunStatus.CANCELLED else AgentStatus.FAILED,
                                 reason=reason, finished_at=time.time()))
            conn.execute(cancel_steps)
        self._event(conn, run_id, "run_done", None, None, {"status": status.value, "reason": reason})

    def _new_llm_step(self, conn: Connection, run_id: str, agent_id: str, turn: int) -> StepRef:
        step_id = new_id()
        conn.execute(sql.INSERT_READY_STEP, {"id": step_id, "run_id": run_id, "agent_id": agent_id,
                                             "kind": StepKind.LLM, "turn": turn, "idx": 0, "attempt": 0, "fence": 0})
        return StepRef(step_id, run_id, agent_id, StepKind.LLM)

    def _ready_refs(self, conn: Connection, run_id: str) -> list[StepRef]:
        return _refs(conn.execute(select(*REF_COLS).where(STEPS.c.run_id == run_id,
                                                          STEPS.c.status == StepStatus.READY)))

    def _has_open_steps(self, conn: Connection, run_id: str) -> bool:
        q = select(STEPS.c.id).where(STEPS.c.run_id == run_id, STEPS.c.status.in_(OPEN)).limit(1)
        return conn.execute(q).first() is not None

    def _message(self, conn: Connection, run_id: str, agent_id: str, seq: int, role: str, content: Any,
                 *, reasoning: str | None = None, tool_calls: Any = None, tool_call_id: str | None = None) -> None:
        conn.execute(sql.INSERT_MESSAGE, {"run_id": run_id, "agent_id": agent_id, "seq": seq, "role": role,
                                          "content": content, "reasoning_content": reasoning,
                                          "tool_calls": tool_calls, "tool_call_id": tool_call_id,
                                          "created_at": time.time()})

    def _event(self, conn: Connection, run_id: str, type_: str, agent_id: str | None, step_id: str | None,
               data: dict[str, Any]) -> None:
        conn.execute(sql.INSERT_EVENT, {"run_id": run_id, "ts": time.time(), "type": type_, "agent_id": agent_id,
                                        "step_id": step_id, "data": data})

    # ------------------------------------------------------------- artifacts

    def artifact_index(self, run_id: str) -> list[ArtifactInfo]:
        return self._files.index(run_id)

    def artifact_contents(self, run_id: str, files: Sequence[ArtifactInfo], *,
                          read_bytes: int = artifacts.READ_BYTES) -> Iterator[tuple[str, str, bytes]]:
        return self._files.contents(run_id, files, read_bytes=read_bytes)

    def artifacts(self, run_id: str) -> dict[str, tuple[str, bytes]]:
        return self._files.all(run_id)

    def steps_of(self, run_id: str, statuses: Sequence[StepStatus] | None = None) -> list[StepRef]:
        with self.read() as conn:
            q = select(*REF_COLS).where(STEPS.c.run_id == run_id)
            if statuses:
                q = q.where(STEPS.c.status.in_(list(statuses)))
            return _refs(conn.execute(q))


def _limits(row: Any) -> AgentLimits:
    """AgentLimits from a row labelled as statements._LIMITS (CLAIM, AGENT_AND_LIMITS)."""
    return AgentLimits(row.agent_name, row.agent_depth, row.agent_steps, row.max_steps, row.max_depth, row.model)


def _with_note(content: str, note: str | None) -> str:
    """A tool result as the model reads it: with the budget note its step carries, if any."""
    return content if not note else f"{content}\n{note}"


def _refs(rows: Iterable[Any]) -> list[StepRef]:
    """StepRefs from rows of REF_COLS."""
    return [StepRef(r.id, r.run_id, r.agent_id, StepKind(r.kind), r.tool_name) for r in rows]


class _BudgetMoved(Exception):
    """Another turn spent budget between our read and our commit (rolls the transaction back)."""


@contextmanager
def _translated() -> Iterator[None]:
    """Database errors as swarm sees them: connectivity → StoreUnavailable, serialisation
    failures and deadlocks → StoreConflict (retry the transaction); refused data (a value too
    long, out of range or unstorable, a constraint violated) → StoreDataError, which retrying
    cannot cure; anything else as it was."""
    try:
        yield
    except PoolTimeout as exc:  # every pooled connection busy for pool_timeout (30 s)
        raise StoreUnavailable(f"no free database connection: {exc}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connectivity(exc):
            raise StoreUnavailable(f"database unavailable: {exc.orig!r}") from exc
        if getattr(exc.orig, "sqlstate", None) in ("40P01", "40001"):
            raise StoreConflict(f"transaction conflict, retry: {exc.orig!r}") from exc
        if isinstance(exc, DataError | IntegrityError):
            raise StoreDataError(f"the database refused the data: {_first_line(exc.orig)}") from exc
        raise
    except (OverflowError, UnicodeEncodeError) as exc:  # the driver refused a value before sending it
        raise StoreDataError(f"the database refused the data: {type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException | None) -> str:
    """An error's first line, short: enough to say what was refused without echoing the data."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= 300 else line[:300] + "…"


def _is_connectivity(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("connection", "server closed", "terminating", "could not connect",
                                   "the database system is", "ssl syscall"))
