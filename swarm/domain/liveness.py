"""Whether anything still works on a running run: a display state, derived, never stored.

A process killed with -9 leaves its runs ``running`` in the database. Readers (``swarm ls``,
``swarm show``, the API, the dashboard) show such a run as ``interrupted``, with what to do.
Who is responsible for a running run:

* **a process that owns it** (embedded ``swarm run`` / ``swarm serve``, and whoever resumed it):
  it renews the run's owner lease with its heartbeat; a lapsed lease means the process is gone;
* **the cluster** (a run with no owner: submitted to Celery workers): it is alive while a worker
  holds the elected sweeper's lease (which re-dispatches whatever a dead worker held) or any step
  of the run holds a live lease. With no sweeper and no live step nothing would ever move it.
"""

from __future__ import annotations

from enum import StrEnum

from swarm.domain.status import RunStatus

INTERRUPTED = "interrupted"


class RunState(StrEnum):
    """What a reader is shown of a run, and what `swarm ls --status` / ``GET /v1/runs?status=``
    filter on: the stored :class:`RunStatus`, with ``running`` split in two. ``running`` lists
    only the runs something still works on; ``interrupted`` the running runs nobody does."""

    RUNNING = RunStatus.RUNNING.value
    INTERRUPTED = INTERRUPTED
    SUCCEEDED = RunStatus.SUCCEEDED.value
    FAILED = RunStatus.FAILED.value
    CANCELLED = RunStatus.CANCELLED.value


#: The states that the stored status alone cannot tell apart (both are stored ``running``).
DERIVED = frozenset({RunState.RUNNING, RunState.INTERRUPTED})


def run_state(status: str, *, owner_alive: bool | None, cluster_alive: bool, steps_alive: bool) -> str:
    """What to show for a run: its status, or ``interrupted`` for a running run nobody works on.

    ``owner_alive``: None when no process owns the run (a cluster run), else whether its owner
    lease is still live; ``cluster_alive``: an elected sweeper holds its lease; ``steps_alive``:
    a step of the run holds a live lease."""
    if status != RunStatus.RUNNING:
        return status
    if owner_alive is not None:
        return status if owner_alive else INTERRUPTED
    return status if cluster_alive or steps_alive else INTERRUPTED


def hint(state: str, run_id: str, *, owned: bool) -> str | None:
    """What the user can do about a run in ``state`` (None: nothing to do)."""
    if state != INTERRUPTED:
        return None
    if owned:
        return f"the process running it is gone: `swarm resume {run_id}` continues it"
    return f"no worker is alive: start `swarm worker` (the run continues) or `swarm resume {run_id}`"
