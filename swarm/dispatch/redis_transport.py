"""kombu's Redis transport with one change: publishing reuses the channel's client.

kombu builds a new ``redis.Redis`` for every message it puts on a queue and every event it
publishes, and building one fills a ~170-entry response-callback table. With a task message and a
``task-sent`` event per step that was a measurable part of publishing a step. A ``redis.Redis`` is
stateless apart from its connection pool (commands borrow a pooled connection each), so one per
channel is safe; it is rebuilt whenever kombu replaces the pool (after a fork or a reconnect).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _swarm_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        cached = self._swarm_client
        if cached is None or cached.connection_pool is not self.pool:
            cached = self._swarm_client = self._create_client()  # type: ignore[no-untyped-call]
        yield cached


class Transport(kombu_redis.Transport):
    Channel = Channel


#: For Celery's ``broker_transport`` (an explicit transport overrides the URL's scheme).
TRANSPORT = f"{__name__}:Transport"
