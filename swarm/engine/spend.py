"""Reserve a model call's worst case against its run's spend budget before the call starts
(decisions: ``swarm.domain.budget``; the conditional UPDATE: ``store.reserve``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from swarm.domain import budget, prompts
from swarm.exceptions import FenceLost
from swarm.store.store import StateStore

#: Longest pause between two tries while other calls in flight hold the rest of the budget.
MAX_PAUSE = 1.0


def reserve(
    store: StateStore,
    run_id: str,
    model: str,
    worst: budget.Worst,
    *,
    still_wanted: Callable[[], bool],
    max_wait: float,
    usd_capped: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Reserve ``worst`` on the run; None once reserved, else the reason the run ends with (its
    budget is exhausted). While only calls in flight stand in the way it waits for them to
    settle, up to ``max_wait`` seconds (a reservation left by a worker that died is given back
    only when the run is resumed). Raises FenceLost if the step is no longer ours meanwhile."""
    if worst.pico is None and usd_capped:  # no price: a USD cap cannot be kept, so no call starts
        return prompts.BUDGET_NO_PRICE.format(model=model)
    deadline = time.monotonic() + max_wait
    pause = 0.02
    while True:
        if store.reserve(run_id, worst):
            return None
        state = store.budget_state(run_id)
        if budget.refused(state, worst) == budget.Verdict.EXHAUSTED or time.monotonic() > deadline:
            return budget.exhausted_reason(state, worst, model)
        if not still_wanted():
            raise FenceLost("step abandoned while waiting for the run's budget")
        sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)


@dataclass(frozen=True)
class TenantHold:
    """A call's reservation on its tenant's day: settled by the call's commit, else given back."""

    tenant: str
    day: str
    pico: int


def reserve_tenant(
    store: StateStore,
    tenant: str,
    cap_pico: int,
    worst_pico: int,
    *,
    still_wanted: Callable[[], bool],
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> TenantHold | str:
    """Reserve ``worst_pico`` on the tenant's spend of today (UTC): the hold, or the reason the run
    ends with (the day's cap is spent). Waits, like :func:`reserve`, while the tenant's calls in
    flight hold the rest of the cap."""
    deadline = time.monotonic() + max_wait
    pause = 0.02
    while True:
        day = budget.utc_day(time.time())
        if store.budgets.reserve_tenant(tenant, day, worst_pico, cap_pico):
            return TenantHold(tenant, day, worst_pico)
        spent, _ = store.budgets.tenant_spend(tenant, day)
        verdict = budget.tenant_refused(spent, cap_pico, worst_pico)
        if verdict == budget.Verdict.EXHAUSTED or time.monotonic() > deadline:
            return budget.tenant_exhausted_reason(tenant, day, spent, cap_pico, worst_pico)
        if not still_wanted():
            raise FenceLost("step abandoned while waiting for the tenant's budget")
        sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
