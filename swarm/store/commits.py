"""Turn commits: what a claimed step's outcome writes, each in one transaction guarded by its fence.

A model turn commits its assistant message, its tool steps (budget permitting) or its agent's end;
a tool call commits its result and the files it changed (on PostgreSQL usually as the single
statement ``statements.COMMIT_TOOL``); a step that failed for good fails its agent.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from swarm.constants import DEFAULT_MAX_REPEATS, ORCHESTRATION_TOOLS
from swarm.domain import approvals, budget, guards, limits, pricing, prompts, sanitize
from swarm.domain.events import EventType
from swarm.domain.llm import LLMResponse
from swarm.domain.status import AgentStatus, RunStatus, StepKind, StepStatus
from swarm.domain.turns import TurnKind, TurnPlan
from swarm.domain.workspace import Changes
from swarm.exceptions import FenceLost
from swarm.store import approvals as approval_store
from swarm.store import artifacts, conversation, outcomes, writes
from swarm.store import statements as sql
from swarm.store.session import Session, new_id
from swarm.store.types import AgentContext, Claim, StepRef


class _BudgetMoved(Exception):
    """Another turn spent budget between our read and our commit (rolls the transaction back)."""


class Commits:
    def __init__(self, session: Session) -> None:
        self.session = session

    def agent_context(self, claim: Claim, *, vision: bool = True) -> AgentContext:
        """What an LLM step sends the model: its agent's limits and conversation (tool results'
        images as image parts, or with ``vision`` off as notes: ``domain.images``)."""
        with self.session.read() as conn:
            agent = claim.agent or writes.limits(conn.execute(sql.AGENT_AND_LIMITS, {"b_id": claim.agent_id}).one())
            rows = conn.execute(sql.MESSAGES_OF, {"b_id": claim.agent_id}).all()
        return AgentContext(claim.run_id, claim.agent_id, agent, conversation.rebuild(rows, vision))

    def commit_llm(
        self,
        claim: Claim,
        response: LLMResponse,
        plan: TurnPlan,
        *,
        max_repeats: int = DEFAULT_MAX_REPEATS,
        cost: int | None = None,
        reserved: tuple[int, int] = (0, 0),
    ) -> list[StepRef]:
        """Commit one model turn: the assistant message, its tool steps (loop guards and budget
        permitting) or the agent's end, all in one transaction guarded by the fence. An identical
        tool call this agent already ran ``max_repeats`` times is refused (``domain/guards.py``).
        ``cost``: the call's price in picodollars (``domain.pricing``), None when unknown; added to
        the agent's and run's. ``reserved``: the (picodollars, tokens) reserved for the call, settled here.

        The run row (budgets, counters) is every agent's hot spot, so it is touched last, by a
        conditional UPDATE that re-checks the budget: the lock is held only for the commit itself.
        If the budget moved meanwhile the transaction is redone holding the lock from the start."""
        try:
            return self._commit_llm(claim, response, plan, max_repeats, cost, reserved, optimistic=True)
        except _BudgetMoved:
            return self._commit_llm(claim, response, plan, max_repeats, cost, reserved, optimistic=False)

    def _commit_llm(
        self,
        claim: Claim,
        response: LLMResponse,
        plan: TurnPlan,
        max_repeats: int,
        cost: int | None,
        reserved: tuple[int, int],
        *,
        optimistic: bool,
    ) -> list[StepRef]:
        with self.session.tx() as conn:
            # Only a turn with tool calls needs the budgets; the pessimistic retry locks them first.
            run = None if optimistic else writes.lock_run(conn, claim.run_id)
            granted = (0, 0)
            outcomes.close_step(
                conn,
                claim,
                StepStatus.SUCCEEDED,
                tokens_in=response.tokens_in,
                tokens_out=response.tokens_out,
                tokens_cached=response.tokens_cached,
                tokens_reasoning=response.tokens_reasoning,
                cost_pico=cost,
            )
            agent = conn.execute(sql.AGENT_COUNTERS, {"b_id": claim.agent_id}).one()
            seq = agent.next_seq
            writes.message(
                conn,
                claim.run_id,
                claim.agent_id,
                seq,
                "assistant",
                response.content,
                reasoning=response.reasoning_content,
                tool_calls=conversation.tool_calls_json(response) or None,
            )
            tokens = {
                "b_tin": response.tokens_in,
                "b_tout": response.tokens_out,
                "b_tcached": response.tokens_cached,
                "b_cost": cost,
            }
            advance = {"b_id": claim.agent_id, "b_next": seq + 1, "b_pending": agent.pending_tools, **tokens}
            refs: list[StepRef] = []
            if plan.kind == TurnKind.TOOLS:
                if run is None:
                    run = conn.execute(sql.RUN_BUDGETS, {"b_id": claim.run_id}).one()
                plan = self._guard(conn, claim, run, plan, max_repeats)
                spend = budget.wrap_up_note(
                    None if run.cost_pico is None or cost is None else run.cost_pico + cost,
                    run.max_cost_pico,
                    run.tokens_in + run.tokens_out + response.tokens_in + response.tokens_out,
                    run.max_tokens,
                    reserved,
                )
                pending, refs, granted = self._open_tool_steps(conn, claim, run, plan, seq, spend)
                conn.execute(sql.ADVANCE_AGENT, {**advance, "b_next": seq + 1 + len(plan.calls), "b_pending": pending})
                if pending == 0:
                    refs.append(writes.new_llm_step(conn, claim.run_id, claim.agent_id, claim.turn + 1))
            elif plan.kind == TurnKind.NUDGE:
                writes.message(conn, claim.run_id, claim.agent_id, seq + 1, "user", prompts.EMPTY_REPLY_NUDGE)
                conn.execute(sql.ADVANCE_AGENT, {**advance, "b_next": seq + 2})
                refs.append(writes.new_llm_step(conn, claim.run_id, claim.agent_id, claim.turn + 1))
            else:
                conn.execute(sql.ADVANCE_AGENT, advance)
            # Written before the agent's (and so the run's) end this turn may cause: readers replay
            # events in id order, so the cause comes first. ``tools_granted`` is the turn's share of
            # the run's tool_calls (docs/architecture.md, "Counts"): `swarm watch` adds it up.
            writes.event(
                conn,
                claim.run_id,
                EventType.LLM_DONE,
                claim.agent_id,
                claim.step_id,
                {
                    "turn": claim.turn,
                    "kind": plan.kind.value,
                    "tool_calls": len(plan.calls),
                    "tools_granted": granted[0],
                    "tokens_in": response.tokens_in,
                    "tokens_out": response.tokens_out,
                    "tokens_cached": response.tokens_cached,
                    "cost_usd": pricing.usd(cost),
                },
            )
            if plan.kind == TurnKind.FINAL:
                refs = outcomes.finish_agent(conn, claim.agent_id, AgentStatus.SUCCEEDED, plan.final_text, None)
            elif plan.kind == TurnKind.STEP_LIMIT:
                reason = prompts.STEP_LIMIT.format(steps=agent.steps + 1)
                refs = outcomes.finish_agent(conn, claim.agent_id, AgentStatus.FAILED, None, reason)
            counted = conn.execute(
                sql.COUNT_TURN,
                {
                    "b_id": claim.run_id,
                    "b_tools": granted[0],
                    "b_subs": granted[1],
                    "b_rpico": reserved[0],
                    "b_rtok": reserved[1],
                    **tokens,
                },
            ).rowcount
            if not counted:
                raise _BudgetMoved()
            return refs

    @staticmethod
    def _guard(conn: Connection, claim: Claim, run: Any, plan: TurnPlan, max_repeats: int) -> TurnPlan:
        """The turn with the loop guards applied: the facts (how often the agent already ran each of
        these calls) are one query, only for a turn whose calls would run."""
        keys = sorted({k for c in plan.calls if (k := guards.planned_key(c)) is not None})
        ran: dict[str, int] = {}
        if keys:
            ran = {key: n for key, n in conn.execute(sql.RAN_BEFORE, {"b_agent": claim.agent_id, "b_keys": keys})}
        return guards.guard_turn(plan, ran, guards.LoopGuards(max_repeats, run.max_spawns_per_turn))

    def _open_tool_steps(
        self, conn: Connection, claim: Claim, run: Any, plan: TurnPlan, seq: int, spend_note: str | None
    ) -> tuple[int, list[StepRef], tuple[int, int]]:
        """Insert the turn's tool steps; returns (pending, refs, (tool calls, subagents) granted).
        The caller adds the grant to the run's counters."""
        valid = [c for c in plan.calls if c.error is None]
        want_tools = sum(1 for c in valid if c.name not in ORCHESTRATION_TOOLS)
        want_subs = sum(c.spawns for c in valid)
        g = limits.grant(
            want_tools,
            want_subs,
            used_tools=run.tool_calls,
            max_tools=run.max_tool_calls,
            used_subagents=run.subagents,
            max_subagents=run.max_subagents,
        )
        tools_left, subs_left = g.tool_calls, g.subagents
        note = (
            limits.budget_note(run.tool_calls + g.tool_calls, run.max_tool_calls, "tool calls") if want_tools else None
        )
        if spend_note:
            note = f"{note}\n{spend_note}" if note else spend_note
        refs: list[StepRef] = []
        ready: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []
        now = time.time()
        for c in plan.calls:
            error = c.error
            if error is None and c.launches_subagent:
                if subs_left >= c.spawns:  # an assign_tasks call launches all its items or none
                    subs_left -= c.spawns
                elif c.spawns > 1 and subs_left > 0:
                    error = prompts.FANOUT_OVER_BUDGET.format(count=c.spawns, left=subs_left, limit=run.max_subagents)
                else:
                    error = limits.over_budget_message("subagents", run.max_subagents)
            elif error is None and c.name not in ORCHESTRATION_TOOLS:
                if tools_left > 0:
                    tools_left -= 1
                else:
                    error = limits.over_budget_message("tool calls", run.max_tool_calls)
            step_id, msg_seq = new_id(), seq + 1 + c.idx
            values = dict(
                id=step_id,
                run_id=claim.run_id,
                agent_id=claim.agent_id,
                kind=StepKind.TOOL,
                turn=claim.turn,
                idx=c.idx,
                tool_name=c.name,
                tool_call_id=c.call_id,
                arguments=c.arguments,
                msg_seq=msg_seq,
                attempt=0,
                fence=0,
            )
            if error is None and approvals.needs_approval(c.name, run.approve_tools):
                held.append({**values, "note": note, "call_key": guards.planned_key(c)})
            elif error is None:
                ready.append({**values, "note": note, "call_key": guards.planned_key(c)})
                refs.append(StepRef(step_id, claim.run_id, claim.agent_id, StepKind.TOOL, c.name))
            else:
                conn.execute(
                    sql.INSERT_STEP,
                    {
                        **values,
                        "status": StepStatus.SUCCEEDED,
                        "result": error,
                        "is_error": True,
                        "started_at": now,
                        "finished_at": now,
                    },
                )
                writes.message(conn, claim.run_id, claim.agent_id, msg_seq, "tool", error, tool_call_id=c.call_id)
        if ready:
            conn.execute(sql.INSERT_READY_STEP, ready)  # one executemany for a whole fan-out
        if held:  # granted, but each waits for a human decision (holding no worker) before it runs
            conn.execute(sql.INSERT_AWAITING_STEP, held)
            approval_store.request(conn, claim.run_id, claim.agent_id, held, run.approval_timeout)
        return len(refs) + len(held), refs, (g.tool_calls - tools_left, g.subagents - subs_left)

    def commit_tool(
        self,
        claim: Claim,
        content: str,
        is_error: bool,
        changes: Changes | None = None,
        images: list[dict[str, Any]] | None = None,
    ) -> list[StepRef]:
        """Commit a tool call's result and the workspace files it changed (``changes``: read from
        disk one at a time inside the transaction, and kept only within the run's quota). A file
        that was not kept is named in the result, with the reason, for the model to read.
        ``images``: what the agent's next model call is shown (``domain.images.Picture`` records)."""
        files = changes.files if changes is not None else {}
        if changes is not None and not files:
            content = changes.note_on(content)
        if self.session.auto is not None and not files and not images and claim.msg_seq is not None:
            return self._commit_tool_at_once(claim, content, is_error)
        with self.session.tx() as conn:
            if changes is not None and files:
                refused = artifacts.save(conn, self.session.dialect, claim.run_id, changes, claim.step_id)
                content = changes.note_on(content, refused)
            refs = outcomes.deliver(conn, claim.step_id, content, is_error, StepStatus.RUNNING, claim.fence, images)
            writes.event(
                conn,
                claim.run_id,
                EventType.TOOL_DONE,
                claim.agent_id,
                claim.step_id,
                {"tool": claim.tool_name, "error": is_error},
            )
            return refs

    def _commit_tool_at_once(self, claim: Claim, content: str, is_error: bool) -> list[StepRef]:
        """What commit_tool's transaction does, as one autocommit statement (PostgreSQL): the
        commit of most tool steps costs one round trip instead of seven."""
        next_id = new_id()
        with self.session.single() as conn:
            row = conn.execute(
                sql.COMMIT_TOOL,
                {
                    "b_id": claim.step_id,
                    "b_fence": claim.fence,
                    "b_result": content,
                    "b_error": is_error,
                    "b_now": time.time(),
                    "b_run": claim.run_id,
                    "b_agent": claim.agent_id,
                    "b_seq": claim.msg_seq,
                    "b_content": writes.with_note(content, claim.note),
                    "b_tcid": claim.tool_call_id,
                    "b_data": {"tool": claim.tool_name, "error": is_error},
                    "b_new": next_id,
                    "b_next_turn": claim.turn + 1,
                },
            ).one()
        if not row.delivered:
            raise FenceLost(f"step {claim.step_id} was taken over or cancelled; result discarded")
        return [StepRef(next_id, claim.run_id, claim.agent_id, StepKind.LLM)] if row.next_step_id else []

    def fail_step(
        self, claim: Claim, error: str, *, fail_run: bool = False, release: tuple[int, int] = (0, 0)
    ) -> list[StepRef]:
        """A step failed for good. Its agent fails (the parent hears of it as a tool error); with
        ``fail_run`` (bad credentials, no quota, budget) the whole run ends at once. ``release``:
        the (picodollars, tokens) reserved for the step's model call, given back."""
        error = sanitize.text(error)  # it may quote what the model or a tool sent
        with self.session.tx() as conn:
            writes.lock_run(conn, claim.run_id)
            if release != (0, 0):
                conn.execute(sql.RELEASE, {"b_id": claim.run_id, "b_rpico": release[0], "b_rtok": release[1]})
            outcomes.close_step(conn, claim, StepStatus.FAILED, error=error)
            writes.event(
                conn, claim.run_id, EventType.STEP_FAILED, claim.agent_id, claim.step_id, {"error": error[:500]}
            )
            if fail_run:
                outcomes.finish_run(conn, claim.run_id, RunStatus.FAILED, None, error)
                return []
            return outcomes.finish_agent(conn, claim.agent_id, AgentStatus.FAILED, None, error)
