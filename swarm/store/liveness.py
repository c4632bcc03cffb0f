"""Whether anything still works on a running run, read for the views: the facts (owner lease,
the cluster's sweeper lease, live step leases) in at most three small queries, judged by the
pure ``domain/liveness.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from swarm.constants import SWEEPER_ROLE
from swarm.domain import liveness
from swarm.domain.status import RunStatus, StepStatus
from swarm.store.db import db_now
from swarm.store.tables import CLUSTER_LEASES, STEPS


def run_states(conn: Connection, runs: Sequence[Any]) -> dict[str, tuple[str, bool]]:
    """(display state, owned by a process) of the running runs among ``runs``: whether anything
    still works on them (``domain/liveness.py``). Finished runs need no query."""
    running = [r for r in runs if r.status == RunStatus.RUNNING]
    if not running:
        return {}
    now = float(conn.execute(select(db_now())).scalar_one())
    unowned = [r.id for r in running if r.owner_until is None]
    cluster_alive, steps_alive = False, set()
    if unowned:
        lease = CLUSTER_LEASES.c
        cluster_alive = (
            conn.execute(
                select(func.count()).where(
                    lease.name == SWEEPER_ROLE, lease.holder.is_not(None), lease.expires_at > now
                )
            ).scalar_one()
            > 0
        )
        if not cluster_alive:  # the open steps of a few runs: ix_steps_run_status
            steps_alive = set(
                conn.execute(
                    select(STEPS.c.run_id)
                    .distinct()
                    .where(STEPS.c.run_id.in_(unowned), STEPS.c.status == StepStatus.RUNNING, STEPS.c.lease_until > now)
                ).scalars()
            )
    return {
        r.id: (
            liveness.run_state(
                r.status,
                owner_alive=None if r.owner_until is None else r.owner_until > now,
                cluster_alive=cluster_alive,
                steps_alive=r.id in steps_alive,
            ),
            r.owner_until is not None,
        )
        for r in running
    }
