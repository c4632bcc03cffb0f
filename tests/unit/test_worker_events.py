"""Task events leave a worker in batches: however many are buffered within EVENT_FLUSH_SECONDS,
one flush sends them, and an event buffered during or after a flush schedules the next one."""

from __future__ import annotations

from typing import Any

from workers.consumer import EVENT_FLUSH_SECONDS, Consumer


class FakeHub:
    def __init__(self) -> None:
        self.soon: list[Any] = []
        self.later: list[tuple[float, Any]] = []

    def call_soon(self, fn: Any) -> None:
        self.soon.append(fn)

    def call_later(self, delay: float, fn: Any) -> None:
        self.later.append((delay, fn))

    def run_soon(self) -> None:
        pending, self.soon = self.soon, []
        for fn in pending:
            fn()


def consumer(hub: FakeHub) -> tuple[Consumer, list[int]]:
    c = Consumer.__new__(Consumer)  # only the event-flush path, none of Celery's start-up
    c.hub = hub
    flushes: list[int] = []
    c._flush_events = lambda: flushes.append(1)  # type: ignore[method-assign]
    return c, flushes


def test_many_buffered_events_make_one_delayed_flush():
    hub = FakeHub()
    c, flushes = consumer(hub)
    for _ in range(10):
        c.on_send_event_buffered()
    hub.run_soon()
    assert [d for d, _ in hub.later] == [EVENT_FLUSH_SECONDS] and flushes == []
    hub.later.pop()[1]()
    assert flushes == [1]


def test_an_event_after_a_flush_schedules_the_next():
    hub = FakeHub()
    c, flushes = consumer(hub)
    c.on_send_event_buffered()
    hub.run_soon()
    hub.later.pop()[1]()
    c.on_send_event_buffered()
    hub.run_soon()
    assert len(hub.later) == 1
    hub.later.pop()[1]()
    assert flushes == [1, 1]


def test_without_an_event_loop_nothing_is_scheduled():
    c, flushes = consumer(FakeHub())
    c.hub = None
    c.on_send_event_buffered()
    assert flushes == [] and not c._flush_scheduled
