"""The two Celery tasks. Both are thin: all logic lives in the executor and the state store.

``swarm.step``   run one step (claim → one model or tool call → commit), then publish the steps
                 the commit made ready. A duplicate or stale message finds nothing to claim.
``swarm.sweep``  re-dispatch what is stuck: steps of dead workers (expired leases) and ready steps
                 whose message was lost (failed publish, Redis flushed or restarted).
"""

from __future__ import annotations

import logging

from swarm.dispatch.celery import STEP_TASK, SWEEP_TASK
from swarm.exceptions import StoreUnavailable
from workers.celery_app import app
from workers.context import context
from workers.timing import StepTimer

log = logging.getLogger(__name__)


def run_step(step_id: str, run_id: str = "", agent_id: str = "", kind: str = "", tool: str | None = None) -> int:
    """Execute one step; returns how many steps it made ready (shown in Flower).

    run_id, agent_id, kind and tool are labels for operators; only step_id is used.
    """
    ctx = context()
    executor = ctx.executor()
    with StepTimer(step_id=step_id, kind=kind, tool=tool) as timer:
        try:
            refs = executor.execute(step_id)
        except StoreUnavailable as exc:
            # The executor has already ridden out what it could (swarm.engine.executor's retry
            # policies); retrying here would only wrap one retry loop in another. Nothing committed:
            # if our claim went through, the step's lease lapses (it is not in flight, so not
            # renewed) and the sweeper hands it out again.
            log.warning(
                "step %s: database unavailable (%s); leaving it to the sweeper",
                step_id,
                exc,
                extra={"run_id": run_id, "agent_id": agent_id, "step_id": step_id},
            )
            return 0
        timer.executed()
        # Only now, after the commit: a published step is always visible to whoever takes it.
        ctx.dispatcher.dispatch(refs)
    return len(refs)


def run_sweep() -> int:
    """One sweeper pass; returns how many steps it re-dispatched. ``celery beat`` (``swarm worker
    --beat``) schedules it every SWARM_SWEEP_INTERVAL seconds on the swarm.control queue."""
    ctx = context()
    try:
        refs = ctx.store.sweep(ctx.settings.republish_after, ctx.settings.step_max_crashes)
    except StoreUnavailable as exc:
        log.warning("sweep skipped: %s", exc)
        return 0
    if refs:
        log.info("sweeper re-dispatching %d step(s)", len(refs))
        ctx.dispatcher.dispatch(refs)
    return len(refs)


# Registered explicitly (not as decorators) so the functions keep their type annotations.
#: A duplicate delivery is cheap (the claim finds nothing), so late acks cost nothing.
step = app.task(name=STEP_TASK, acks_late=True, ignore_result=True, max_retries=3)(run_step)
#: Periodic: a lost sweep is replaced by the next one, so it is acked on receipt.
sweep = app.task(name=SWEEP_TASK, acks_late=False, ignore_result=True)(run_sweep)
