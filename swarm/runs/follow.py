"""Following the append-only ``events`` table without missing an event.

The trap: on PostgreSQL, event ids come from a sequence when a row is INSERTed, but rows become
visible when their transaction COMMITs. Two concurrent transactions can commit out of order, so
a reader may see id 100 while id 98 is still invisible. A client that got 100 and later resumes
with ``Last-Event-ID: 100`` would never see 98.

The rule that prevents it: only hand out events up to the first *gap* in the global id sequence
(ids are shared by all runs, so per-run gaps mean nothing), and wait for gaps to fill. A gap can
also be permanent (its transaction rolled back). On PostgreSQL that is decided exactly: right
after each read the follower notes which writers were in progress (``pg_current_snapshot()``);
the transaction holding a missing id is one of them (swarm writes other rows before an event, so
it has its transaction id by then), and once all of them have ended, a later read that still
lacks the id proves it is gone. As a backstop — and the only rule elsewhere — a row blocked for
``gap_timeout`` seconds, or older than ``stale_after`` by its ``ts``, is let through.

:class:`GapTracker` is that rule; :func:`follow_store` runs it in a process that reads the database
directly (``swarm watch`` without a server); the API's :class:`~swarm.api.events.EventHub` runs it
once per server process and fans events out to every SSE connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from swarm.domain.events import EventType
from swarm.domain.liveness import INTERRUPTED
from swarm.domain.status import RUN_TERMINAL
from swarm.store.store import StateStore

log = logging.getLogger(__name__)

GAP_TIMEOUT = 10.0
#: How often a follower that gets no event asks whether anything still works on the run.
STATE_EVERY = 2.0
STALE_AFTER = 30.0
BATCH = 2000

#: PostgreSQL's writers in progress: (xmin, newest in-progress transaction id or None).
XidSnapshot = tuple[int, int | None]


class GapTracker:
    """Decides how far the contiguous, safe-to-publish prefix of the event id sequence reaches.

    Call :meth:`advance` with each read's rows and the snapshot taken right AFTER that read.
    """

    def __init__(self, gap_timeout: float = GAP_TIMEOUT, stale_after: float = STALE_AFTER) -> None:
        self.gap_timeout, self.stale_after = gap_timeout, stale_after
        #: row id → (first seen blocked, the xmin that proves every writer of then has ended)
        self._blocked: dict[int, tuple[float, int | None]] = {}
        #: xmin of the snapshot taken after the previous read, i.e. before this one
        self._before_read: int | None = None

    def advance(
        self, frontier: int, rows: Sequence[Mapping[str, Any]], now: float, snapshot: XidSnapshot | None = None
    ) -> int:
        """The new frontier given ``rows`` (id-ordered, all with id > ``frontier``): every id up to
        it is either published or known never to commit."""
        ended_all = None if snapshot is None else (snapshot[1] + 1 if snapshot[1] is not None else snapshot[0])
        expected = frontier + 1
        blocked = False
        for r in rows:
            i = int(r["id"])
            if i < expected:
                continue
            if blocked or i > expected:
                # Clocks start at the first sighting, so no row waits more than gap_timeout in all.
                first, need = self._blocked.setdefault(i, (now, ended_all))
            if blocked:
                continue
            if i > expected:
                if not self._gone(first, need, float(r["ts"]), now):
                    blocked = True
                    continue
                log.debug("event ids %d..%d never committed; moving on", expected, i - 1)
            expected = i + 1
        self._blocked = {k: v for k, v in self._blocked.items() if k >= expected}
        self._before_read = None if snapshot is None else snapshot[0]
        return expected - 1

    def _gone(self, first: float, need: int | None, ts: float, now: float) -> bool:
        # Exact: every writer in progress when the gap was seen had ended before this read.
        if need is not None and self._before_read is not None and self._before_read >= need:
            return True
        return now - first >= self.gap_timeout or now - ts >= self.stale_after


class Abandoned:
    """Whether a followed run is interrupted (``domain/liveness.py``: the process running it died,
    or no worker is alive): then no event will ever come and a follower stops, as it does for an
    ended run. The state is read at most every ``every`` seconds while no event comes, and it
    takes two such reads in a row (a heartbeat a little late is not a death)."""

    def __init__(self, every: float = STATE_EVERY) -> None:
        self.every, self._at, self._seen = every, time.monotonic(), 0

    def due(self) -> bool:
        return time.monotonic() - self._at >= self.every

    def alive(self) -> None:
        """An event came: the run moves."""
        self._at, self._seen = time.monotonic(), 0

    def note(self, state: str) -> bool:
        """Record a state read (when :meth:`due`); True once the run is abandoned."""
        self._at = time.monotonic()
        self._seen = self._seen + 1 if state == INTERRUPTED else 0
        return self._seen >= 2


def initial_frontier(store: StateStore, stale_after: float = STALE_AFTER, now: float | None = None) -> int:
    """Where a new follower may start: the newest event old enough that nothing below it can
    still be in flight (or just below the newest few thousand, which the gap rule then checks)."""
    now = time.time() if now is None else now
    heads = store.recent_event_heads()
    if not heads:
        return 0
    for event_id, ts in heads:
        if now - ts >= stale_after:
            return event_id
    return heads[-1][0] - 1


def follow_store(
    store: StateStore, run_id: str, after_id: int = 0, *, poll: float = 0.25, stop: Callable[[], bool] = lambda: False
) -> Iterator[list[dict[str, Any]]]:
    """Batches of a run's events with id > ``after_id``, gap-safe, read straight from the database
    (for ``swarm watch`` without a server). Ends after ``run_done`` once the run is terminal, or
    once it is interrupted (:class:`Abandoned`) and its last event is out."""
    gaps = GapTracker()
    frontier = initial_frontier(store)
    last = after_id
    # Everything up to the safe frontier comes from the run's own index; beyond it, the global scan.
    while True:
        batch = store.run_events_between(run_id, last, frontier, BATCH)
        if batch:
            last = batch[-1]["id"]
            yield batch
        if len(batch) < BATCH:
            break
    ending = True  # as in the SSE stream: over once terminal AND the last event is out
    abandoned = Abandoned()
    while not stop():
        if abandoned.due() and abandoned.note(store.run_state(run_id)) and store.last_run_event_id(run_id) <= last:
            return
        if ending:
            if store.run_status(run_id) not in RUN_TERMINAL:
                ending = False
            elif store.last_run_event_id(run_id) <= last:
                return
        rows = store.events_after(frontier, BATCH)
        new = gaps.advance(frontier, rows, time.time(), store.xid_snapshot()) if rows else frontier
        mine = [r for r in rows if frontier < r["id"] <= new and r["run_id"] == run_id and r["id"] > last]
        frontier = new
        if mine:
            abandoned.alive()
            last = mine[-1]["id"]
            yield mine
            ending = ending or any(e["type"] == EventType.RUN_DONE for e in mine)
        if len(rows) < BATCH:
            time.sleep(poll)
