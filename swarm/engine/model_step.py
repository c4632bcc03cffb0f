"""An LLM step in its three parts: prepare (database), the model call (I/O), finish (database).

The executor runs them in one thread (a test double, or a capacity shared through Redis), or
hands the call to the process's model loop (swarm.llm.aio) and returns its thread at once: the
finish then runs on a commit thread when the call's outcome arrives. Either way the same code
reserves budgets, maps model errors and commits under the step's fence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from swarm.config import Settings
from swarm.domain import budget, pricing, prompts, sanitize
from swarm.domain.llm import CallContext, LLMResponse, cache_key
from swarm.engine import spend
from swarm.engine.planner import plan_turn
from swarm.exceptions import FenceLost, LLMAuthError, LLMError, LLMQuotaExceeded, StoreDataError
from swarm.store.store import StateStore
from swarm.store.types import AgentContext, Claim, StepRef

T = TypeVar("T")


class StepExecutor(Protocol):
    """What an LLM step uses of ``swarm.engine.executor.StepExecutor``."""

    store: StateStore
    settings: Settings
    prices: pricing.PriceTable

    def available_tools(self, ctx: AgentContext) -> tuple[Collection[str], list[dict[str, Any]]]: ...

    def _durable(self, fn: Callable[[], T]) -> T: ...


@dataclass
class Turn:
    """What a prepared model call needs: the request's parts and what its commit settles."""

    messages: list[dict[str, Any]]
    schemas: list[dict[str, Any]]
    names: Collection[str]
    last_step: bool
    model: str
    call: CallContext
    max_tokens: int | None
    reserved: tuple[int, int]
    hold: Any  # the tenant's day held for this call (spend.reserve_tenant), or None


def prepare(ex: StepExecutor, claim: Claim) -> Turn | list[StepRef]:
    """Read the agent's context and reserve the call's worst case; the steps made ready if the
    step ended here (a budget refused the call)."""
    vision = ex.settings.llm_vision
    ctx = ex._durable(lambda: ex.store.agent_context(claim, vision=vision))
    names, schemas = ex.available_tools(ctx)
    last_step = ctx.agent.steps + 1 >= ctx.agent.max_steps
    messages = list(ctx.messages)
    if last_step:
        messages.append({"role": "user", "content": prompts.LAST_STEP_NOTE})
    reserved, max_tokens, hold = (0, 0), None, None
    usd = ex.settings.tenant_max_usd_per_day
    tenant_cap = None if usd is None or ctx.agent.tenant is None else pricing.to_pico(usd)
    if ctx.agent.budgeted or tenant_cap is not None:
        # Reserve the call's worst case first: no call starts past a cap.
        max_tokens = ex.settings.llm_max_tokens
        size = budget.prompt_bytes(messages, schemas)
        worst = budget.worst_case(size, max_tokens, ex.prices.price(ctx.agent.model))
        wait = ex.settings.llm_timeout + ex.settings.lease_seconds
        if ctx.agent.budgeted:
            reason = spend.reserve(
                ex.store,
                claim.run_id,
                ctx.agent.model,
                worst,
                still_wanted=lambda: ex.store.still_claimed(claim),
                max_wait=wait,
                usd_capped=ctx.agent.max_cost_pico is not None,
            )
            if reason is not None:
                return ex._durable(lambda: ex.store.fail_step(claim, reason, fail_run=True))
            reserved = (worst.pico or 0, worst.tokens)
        if tenant_cap is not None and ctx.agent.tenant is not None:
            held = (
                prompts.BUDGET_NO_PRICE.format(model=ctx.agent.model)
                if worst.pico is None
                else spend.reserve_tenant(
                    ex.store,
                    ctx.agent.tenant,
                    tenant_cap,
                    worst.pico,
                    still_wanted=lambda: ex.store.still_claimed(claim),
                    max_wait=wait,
                )
            )
            if isinstance(held, str):
                return ex._durable(lambda: ex.store.fail_step(claim, held, fail_run=True, release=reserved))
            hold = held
    call = CallContext(
        claim.run_id,
        claim.agent_id,
        claim.step_id,
        cache_key(claim.run_id, ctx.agent.name),
        ctx.agent.provider or "",
        ctx.agent.provider_limits,
    )
    return Turn(messages, schemas, names, last_step, ctx.agent.model, call, max_tokens, reserved, hold)


def call_kwargs(ex: StepExecutor, claim: Claim, turn: Turn) -> dict[str, Any]:
    """The model client's arguments for ``turn`` (``complete`` and ``swarm.llm.aio.acomplete`` alike)."""
    still_wanted: Callable[[], bool] = lambda: ex.store.still_claimed(claim)  # noqa: E731
    return {"model": turn.model, "still_wanted": still_wanted, "max_tokens": turn.max_tokens}


def finish(ex: StepExecutor, claim: Claim, turn: Turn, outcome: LLMResponse | BaseException) -> list[StepRef]:
    """Commit the call's answer (or fail the step with its error), settling the reservations."""
    try:
        if isinstance(outcome, BaseException) and not isinstance(outcome, LLMError):
            raise outcome  # FenceLost, or a bug: not the model's answer
        refs, cost = _commit(ex, claim, turn, outcome)
    except (FenceLost, StoreDataError):
        if turn.reserved != (0, 0):  # the call will not commit: its reservation goes back
            ex._durable(lambda: ex.store.release_reservation(claim.run_id, *turn.reserved))
        if (hold := turn.hold) is not None:
            ex._durable(lambda: ex.store.budgets.release_tenant(hold.tenant, hold.day, hold.pico))
        raise
    if (hold := turn.hold) is not None:  # committed (cost) or failed (None): the tenant's day is settled
        ex._durable(lambda: ex.store.budgets.settle_tenant(hold.tenant, hold.day, hold.pico, cost or 0))
    return refs


def _commit(
    ex: StepExecutor, claim: Claim, turn: Turn, outcome: LLMResponse | LLMError
) -> tuple[list[StepRef], int | None]:
    reserved = turn.reserved
    if isinstance(outcome, (LLMAuthError, LLMQuotaExceeded)):
        # Retrying cannot help and burns quota: end the whole run now, with the reason.
        error = f"{type(outcome).__name__}: {outcome}"
        return ex._durable(lambda: ex.store.fail_step(claim, error, fail_run=True, release=reserved)), None
    if isinstance(outcome, LLMError):
        error = f"model call failed: {type(outcome).__name__}: {outcome}"
        return ex._durable(lambda: ex.store.fail_step(claim, error, release=reserved)), None
    response = sanitize.response(outcome)  # what the database cannot store never reaches it
    plan = plan_turn(response, turn.names, last_step=turn.last_step)
    usage = pricing.Usage(response.tokens_in, response.tokens_cached, response.tokens_out, response.tokens_reasoning)
    cost = ex.prices.cost(turn.model, usage)
    max_repeats = ex.settings.max_repeats
    refs = ex._durable(
        lambda: ex.store.commit_llm(claim, response, plan, max_repeats=max_repeats, cost=cost, reserved=reserved)
    )
    return refs, cost
