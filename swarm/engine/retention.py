"""SWARM_RETENTION_DAYS: the sweeper deletes the runs that ended longer ago, continuously.

One :class:`RetentionPass` lives with whichever sweeper a process runs (the cluster's elected one,
the embedded runtime's). It prunes once at start and then every ``interval`` seconds, at most
``per_pass`` runs each time: a backlog (retention switched on over a year of runs) is deleted a
few runs per sweep, each run in the store's small batches, so neither the sweeper nor other runs
wait behind it. It logs one line only when it deleted something.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from swarm.constants import RETENTION_INTERVAL_SECONDS, RETENTION_RUNS_PER_PASS
from swarm.domain.durations import DAY
from swarm.domain.status import RUN_TERMINAL
from swarm.store.retention import Deleted
from swarm.store.store import StateStore

log = logging.getLogger(__name__)


class RetentionPass:
    def __init__(
        self,
        store: StateStore,
        days: int,
        *,
        interval: float = RETENTION_INTERVAL_SECONDS,
        per_pass: int = RETENTION_RUNS_PER_PASS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.days, self.interval, self.per_pass, self.clock = store, days, interval, per_pass, clock
        #: When the last pass that found nothing more to delete ended (None: never: due at once).
        self._caught_up: float | None = None

    def due(self) -> bool:
        return self._caught_up is None or self.clock() - self._caught_up >= self.interval

    def __call__(self) -> Deleted | None:
        """Delete what is due now (None when it was not due)."""
        if not self.due():
            return None
        freed = self.store.retention.prune(self.days * DAY, RUN_TERMINAL, limit=self.per_pass)
        if len(freed.runs) < self.per_pass:  # else more are waiting: go on at the next sweep
            self._caught_up = self.clock()
        if freed.runs:
            log.info(
                "retention (%d days): deleted %d run(s), %d rows, %d bytes of data, %d file bytes",
                self.days,
                len(freed.runs),
                sum(freed.rows.values()),
                freed.data_bytes,
                freed.file_bytes,
            )
        return freed
