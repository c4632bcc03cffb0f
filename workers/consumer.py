"""Celery's worker consumer, with task events sent in batches a few times a second.

A worker buffers its ``task-received``/``-started``/``-succeeded`` events and Celery flushes the
buffer on every turn of its event loop, so a busy node published about one small ``task.multi``
message per step, a large share of a prefork tool worker's main-process CPU (docs/benchmarks.md,
"Measured design choices"). Flushing at most every
:data:`EVENT_FLUSH_SECONDS` (or when the buffer holds ``buffer_limit`` events, as before) sends
the same events, in the same order, in fewer messages; Flower shows them that much later.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

#: How long an event may wait for others to share its message. Short next to what an operator
#: can notice in Flower, long next to the gap between steps on a busy node.
EVENT_FLUSH_SECONDS = 0.1


class Consumer(CeleryConsumer):  # type: ignore[misc]
    _flush_scheduled = False

    def on_send_event_buffered(self) -> None:
        # Called from pool threads too: only the loop thread touches the hub's timer.
        hub: Any = self.hub
        if hub is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            hub.call_soon(self._schedule_flush)

    def _schedule_flush(self) -> None:
        self.hub.call_later(EVENT_FLUSH_SECONDS, self._timed_flush)

    def _timed_flush(self) -> None:
        # Cleared first: an event buffered while this flush runs schedules the next one.
        self._flush_scheduled = False
        self._flush_events()


#: For Celery's ``worker_consumer`` setting.
CONSUMER = f"{__name__}:Consumer"
