"""The cluster's sweeper, elected through the database.

Every worker process runs an :class:`ElectedSweeper` thread. Each interval it renews (or takes
over) the ``sweeper`` role lease in the database (``StateStore.hold_role``: one conditional
UPDATE on the database's clock); only the holder sweeps. So any set of worker processes has
exactly one sweeper, no node is special, and when the holder dies its lease lapses and another
process takes the role over within (SWEEPER_LEASE_INTERVALS + 1) intervals. Two sweepers for a
moment (a holder paused past its lease, then waking) are harmless: each stuck step is handed out
by one UPDATE ... RETURNING.

It logs only what changes: the role taken, lost or released, and steps re-dispatched. With
SWARM_RETENTION_DAYS the holder also deletes old ended runs (``engine.retention``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from swarm.constants import MAX_STEP_ATTEMPTS, SWEEPER_LEASE_INTERVALS, SWEEPER_ROLE
from swarm.exceptions import StoreUnavailable
from swarm.store.store import StateStore
from swarm.store.types import StepRef

log = logging.getLogger(__name__)


class ElectedSweeper(threading.Thread):
    """Sweeps every ``interval`` seconds while this process holds the cluster's sweeper role."""

    def __init__(
        self,
        store: StateStore,
        holder: str,
        *,
        interval: float,
        republish_after: float,
        dispatch: Callable[[Sequence[StepRef]], None],
        max_crashes: int = MAX_STEP_ATTEMPTS,
        retention: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(name="swarm-sweeper", daemon=True)
        self.store, self.holder, self.interval = store, holder, interval
        self.ttl = interval * SWEEPER_LEASE_INTERVALS
        self.republish_after, self.dispatch, self.max_crashes = republish_after, dispatch, max_crashes
        #: SWARM_RETENTION_DAYS' pass (``engine.retention.RetentionPass``), run by the holder only.
        self.retention = retention
        #: Whether this process held the role at its last try.
        self.leading = False
        self._stop_event = threading.Event()
        self._problem = ""

    def run(self) -> None:
        try:
            while True:
                self.tick()
                if self._stop_event.wait(self.interval):
                    return
        finally:
            self._release()

    def tick(self) -> int:
        """Renew or take the role; sweep if held. Returns how many steps it re-dispatched."""
        try:
            held = self.store.hold_role(SWEEPER_ROLE, self.holder, self.ttl)
            if held != self.leading:
                if held:
                    log.info("this process is now the cluster's sweeper (%s)", self.holder)
                else:
                    log.info("no longer the cluster's sweeper: another process took the role over")
                self.leading = held
            if not held:
                return 0
            refs = self.store.sweep(self.republish_after, self.max_crashes)
            if refs:
                log.info("sweeper re-dispatching %d step(s)", len(refs))
                self.dispatch(refs)
            if self.retention is not None:
                self.retention()
        except StoreUnavailable as exc:
            self._trouble(f"database unavailable: {exc}")
            return 0
        except Exception as exc:
            self._trouble(f"{type(exc).__name__}: {exc}", exc_info=True)
            return 0
        self._problem = ""
        return len(refs)

    def _trouble(self, problem: str, *, exc_info: bool = False) -> None:
        # Said once per problem, not every interval; a holder that cannot renew stops sweeping
        # (its lease lapses and someone who can reach the database takes over).
        if self.leading:
            self.leading = False
            log.warning("stopped sweeping (%s)", problem)
        if problem != self._problem:
            log.warning("sweeper election: %s", problem, exc_info=exc_info)
            self._problem = problem

    def request_stop(self) -> None:
        """Stop trying; the thread hands the role over as it ends. Safe in a signal handler."""
        self._stop_event.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop trying and hand the role over at once (a clean shutdown)."""
        self.request_stop()
        if self.is_alive():
            self.join(timeout)
        else:  # never started (driven by tick()), or already ended
            self._release()

    def _release(self) -> None:
        if not self.leading:
            return
        self.leading = False
        try:
            if self.store.release_role(SWEEPER_ROLE, self.holder):
                log.info("released the cluster's sweeper role")
        except Exception as exc:  # it lapses by itself within its lease
            log.debug("could not release the sweeper role: %s", exc)
