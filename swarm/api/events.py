"""The API's event hub: one follower of the ``events`` table per server process, fanned out to every
SSE connection (50 watchers cost one query per poll, not 50). Why following that table needs a gap
rule, and the rule itself, are in :mod:`swarm.runs.follow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swarm.runs.follow import BATCH, GAP_TIMEOUT, STALE_AFTER, GapTracker, initial_frontier
from swarm.store.store import StateStore

log = logging.getLogger(__name__)


def sse_format(event: Mapping[str, Any]) -> str:
    """One Server-Sent Event: ``id`` (for Last-Event-ID), ``event`` (the type) and JSON ``data``.
    Delivered events carry it ready-made under ``"sse"``."""
    data = json.dumps(
        {k: event[k] for k in ("id", "run_id", "ts", "type", "agent_id", "step_id", "data")},
        ensure_ascii=False,
        default=str,
    )
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


@dataclass(eq=False)
class Subscription:
    """One SSE connection's feed: every event of ``run_id`` with id > ``start`` arrives on ``queue``
    (batches, in id order, each event with its formatted ``"sse"`` text). ``None`` on the queue
    means the feed ended (server closing, or the reader fell too far behind and must reconnect,
    which is lossless with Last-Event-ID)."""

    run_id: str
    start: int
    queue: asyncio.Queue[list[dict[str, Any]] | None] = field(default_factory=asyncio.Queue)


class EventHub:
    """One poller per server process over the global event sequence, fanning out by run."""

    #: A reader this many batches behind is cut off (it reconnects and catches up from the database).
    MAX_BACKLOG = 1000

    def __init__(
        self,
        store: StateStore,
        *,
        poll_interval: float = 0.1,
        idle_interval: float = 0.5,
        gap_timeout: float = GAP_TIMEOUT,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.store = store
        self.poll_interval, self.idle_interval = poll_interval, idle_interval
        self.stale_after = stale_after
        self.gaps = GapTracker(gap_timeout, stale_after)
        self.frontier = 0
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self.frontier = await asyncio.to_thread(initial_frontier, self.store, self.stale_after)
        self._task = asyncio.create_task(self._run(), name="swarm-event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for subs in self._subs.values():
            for sub in subs:
                sub.queue.put_nowait(None)
        self._subs.clear()

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(run_id, self.frontier)
        self._subs.setdefault(run_id, set()).add(sub)
        self._wake.set()  # poll at the fast rate from now on
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def _run(self) -> None:
        while True:
            try:
                full = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be restarting: keep trying, never die
                log.warning("event hub: %s: %s", type(exc).__name__, exc)
                full = False
                await asyncio.sleep(1.0)
            if full:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval if self._subs else self.idle_interval)

    async def _tick(self) -> bool:
        rows = await asyncio.to_thread(self.store.events_after, self.frontier, BATCH)
        if not rows:
            return False
        snapshot = await asyncio.to_thread(self.store.xid_snapshot)  # after the read, never before
        new = self.gaps.advance(self.frontier, rows, time.time(), snapshot)
        if new > self.frontier:
            by_run: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                if r["id"] > new:
                    break
                if r["run_id"] in self._subs:
                    by_run.setdefault(r["run_id"], []).append(r)
            self.frontier = new
            for run_id, events in by_run.items():
                for e in events:
                    e["sse"] = sse_format(e)  # once, for every watcher of the run
                for sub in list(self._subs.get(run_id, ())):
                    self._deliver(sub, events)
        # A full batch consumed: more rows are probably waiting, so poll again at once.
        return len(rows) == BATCH and new >= rows[-1]["id"]

    def _deliver(self, sub: Subscription, events: list[dict[str, Any]]) -> None:
        if sub.queue.qsize() >= self.MAX_BACKLOG:
            self.unsubscribe(sub)
            sub.queue.put_nowait(None)
            return
        fresh = [e for e in events if e["id"] > sub.start]
        if fresh:
            sub.queue.put_nowait(fresh)
