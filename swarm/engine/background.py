"""Periodic housekeeping threads: lease heartbeat and the sweeper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence

from swarm.constants import MAX_STEP_ATTEMPTS
from swarm.exceptions import StoreUnavailable
from swarm.store.store import StateStore
from swarm.store.types import StepRef

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    """Calls ``fn`` every ``interval`` seconds until stopped; survives errors in ``fn``."""

    def __init__(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval, self.fn = interval, fn
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.fn()
            except StoreUnavailable as exc:
                log.warning("%s: %s", self.name, exc)
            except Exception:
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self._stop_event.set()


def heartbeat(
    store: StateStore,
    owner: str,
    interval: float,
    lease: float,
    steps: Callable[[], Collection[str]] | None = None,
    runs: Callable[[], Collection[str]] | None = None,
) -> Periodic:
    """Keep the leases of this process's running steps fresh, so only dead workers lose theirs.
    ``steps`` (e.g. ``StepExecutor.in_flight``) limits renewal to steps still being worked on;
    ``runs``: the runs this process owns (an embedded runtime's), whose owner lease it renews."""

    def beat() -> None:
        store.heartbeat(owner, lease, None if steps is None else steps())
        if runs is not None:
            store.own_runs(owner, lease, runs())

    return Periodic("swarm-heartbeat", interval, beat)


def sweeper(
    store: StateStore,
    interval: float,
    republish_after: float,
    dispatch: Callable[[Sequence[StepRef]], None],
    runs: Callable[[], Collection[str]] | None = None,
    max_crashes: int = MAX_STEP_ATTEMPTS,
) -> Periodic:
    """Re-dispatch steps of dead workers and ready steps nobody started (of ``runs()`` only, if
    given); give up steps that crashed their worker ``max_crashes`` times."""

    def sweep() -> None:
        refs = store.sweep(republish_after, max_crashes, run_ids=None if runs is None else runs())
        if refs:
            log.info("sweeper re-dispatching %d step(s)", len(refs))
            dispatch(refs)

    return Periodic("swarm-sweeper", interval, sweep)
