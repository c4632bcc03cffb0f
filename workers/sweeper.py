"""Every worker process is a candidate for the cluster's sweeper (swarm.engine.election).

Started when a worker's main process is ready (after a prefork pool has forked its children),
stopped, handing the role over, when it shuts down. It has a database connection of its own, so
a sweep never waits behind busy step threads, and publishes through the worker's application.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from celery import Celery

from swarm.config import Settings
from swarm.dispatch.celery import CeleryDispatcher
from swarm.engine.election import ElectedSweeper
from swarm.engine.retention import RetentionPass
from swarm.store.db import make_engine
from swarm.store.store import StateStore, owner_id

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    sweeper: ElectedSweeper | None = None
    pid: int = 0


_slot = _Slot()


def start(app: Celery, settings: Settings) -> ElectedSweeper:
    """This process's candidate (started once; again after a fork)."""
    if _slot.sweeper is not None and _slot.pid == os.getpid():
        return _slot.sweeper
    store = StateStore(make_engine(settings.db_url, pool_size=1, max_overflow=1))
    dispatcher = CeleryDispatcher(app, store.cluster_id)
    sweeper = ElectedSweeper(
        store,
        owner_id(),
        interval=settings.sweep_interval,
        republish_after=settings.republish_after,
        dispatch=dispatcher.dispatch,
        max_crashes=settings.step_max_crashes,
        retention=None if settings.retention_days is None else RetentionPass(store, settings.retention_days),
    )
    sweeper.start()
    _slot.sweeper, _slot.pid = sweeper, os.getpid()
    return sweeper


def stop() -> None:
    sweeper = _slot.sweeper
    if sweeper is None or _slot.pid != os.getpid():
        return
    _slot.sweeper = None
    try:
        sweeper.stop()
    finally:
        sweeper.store.engine.dispose()


def stopping() -> None:
    """The worker was told to stop: no more tries, and the role is handed over now (only sets an
    event: it runs in Celery's signal handler)."""
    sweeper = _slot.sweeper
    if sweeper is not None and _slot.pid == os.getpid():
        sweeper.request_stop()


def after_fork() -> None:
    """In a forked pool child: the parent's candidate is not ours (no thread, shared sockets)."""
    sweeper = _slot.sweeper
    if sweeper is not None and _slot.pid != os.getpid():
        _slot.sweeper = None
        sweeper.store.engine.dispose(close=False)


def current() -> ElectedSweeper | None:
    return _slot.sweeper if _slot.pid == os.getpid() else None
