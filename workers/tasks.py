"""The step task. Thin: all logic lives in the executor and the state store.

Run one step (claim → one model or tool call → commit), then publish the steps the commit made
ready. A duplicate or stale message finds nothing to claim. One function, registered under every
name a step is published as (``swarm.llm``, ``swarm.tool.<tool>``, ``swarm.tool``; ``swarm.step``
for messages of older versions), so Flower's task list says what each step is.

The sweeper is no task: every worker process runs a candidate thread (workers/sweeper.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from swarm.dispatch.celery import STEP_TASK, STEP_TASKS
from swarm.engine.executor import Later
from swarm.exceptions import StoreUnavailable
from swarm.store.types import StepRef
from workers.celery_app import app
from workers.context import WorkerContext, context
from workers.identity import REFUSALS
from workers.timing import StepTimer

log = logging.getLogger(__name__)


def run_step(
    step_id: str, run_id: str = "", agent_id: str = "", kind: str = "", tool: str | None = None, cluster: str = ""
) -> int:
    """Execute one step; returns how many steps it made ready (shown in Flower).

    run_id, agent_id, kind and tool are labels for operators. ``cluster`` is the publishing
    deployment's id: a step of another deployment is refused (workers/identity.py).
    """
    ctx = context()
    if cluster:
        try:
            mine = ctx.cluster_id
        except StoreUnavailable as exc:  # as below: nothing claimed, the owner's sweeper re-publishes
            log.warning("step %s: database unavailable (%s); leaving it to the sweeper", step_id, exc)
            return 0
        if cluster != mine:
            raise REFUSALS.refuse(app, mine, cluster, step_id, run_id)
    executor = ctx.executor()
    with StepTimer(step_id=step_id, kind=kind, tool=tool) as timer:
        try:
            # An LLM step returns here once its model call is on the process's model loop: the
            # task (and its Celery thread) is done, the step is not. It stays owned by this
            # process (its lease renewed by the heartbeat) until its commit, which runs on the
            # context's commit threads and publishes what it made ready (docs/cluster.md).
            refs = executor.execute(step_id, later=_later(ctx, step_id, run_id))
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


def _later(ctx: WorkerContext, step_id: str, run_id: str) -> Later | None:
    commits = ctx.commits
    if commits is None:
        return None

    def later(rest: Callable[[], list[StepRef]]) -> None:
        commits.submit(_commit, ctx, step_id, run_id, rest)

    return later


def _commit(ctx: WorkerContext, step_id: str, run_id: str, rest: Callable[[], list[StepRef]]) -> None:
    try:
        refs = rest()
    except Exception:  # its lease lapses; the sweeper hands the step out again
        log.exception("step %s: its commit failed; leaving it to the sweeper", step_id, extra={"run_id": run_id})
        return
    ctx.dispatcher.dispatch(refs)


# Registered explicitly (not as decorators) so the functions keep their type annotations.
#: A duplicate delivery is cheap (the claim finds nothing), so late acks cost nothing.
tasks = {name: app.task(name=name, acks_late=True, ignore_result=True, max_retries=3)(run_step) for name in STEP_TASKS}
step = tasks[STEP_TASK]
