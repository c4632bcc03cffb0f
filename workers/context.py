"""What a worker process needs to run steps, built lazily once per process.

The Celery application hands itself and its settings over at import (:func:`bind`), so this module
never imports the application module back.

Per process, never shared across a fork: SQLAlchemy pools, the HTTP client and the heartbeat
thread all belong to the process that created them. A prefork child therefore builds its own on
its first task; a threads-pool worker builds one and shares it among its threads (all of these
objects are thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from swarm.config import Settings
from swarm.dispatch.celery import CeleryDispatcher
from swarm.engine.background import Periodic, heartbeat
from swarm.engine.executor import StepExecutor
from swarm.exceptions import ConfigError
from swarm.llm.aio import can_await, model_loop
from swarm.llm.routing import ProviderRouter
from swarm.store.db import make_engine
from swarm.store.store import StateStore, owner_id
from swarm.tools.builtin import default_registry
from swarm.tools.mcp_hub import McpHub
from workers.timing import instrument

log = logging.getLogger(__name__)


#: Threads per worker process committing the model calls its loop finished: short database work.
COMMIT_THREADS = 8


@dataclass
class _Pool:
    concurrency: int = 1
    threads: bool = False


_pool = _Pool()


@dataclass
class _Binding:
    app: Celery | None = None
    settings: Settings | None = None


_binding = _Binding()


def bind(app: Celery, settings: Settings) -> None:
    """Called once by :mod:`workers.celery_app`: the application steps are published through and the
    settings every context of this process is built from."""
    _binding.app, _binding.settings = app, settings


def _bound() -> tuple[Celery, Settings]:
    if _binding.app is None or _binding.settings is None:
        raise RuntimeError("workers.context is not bound to a Celery app: import workers.celery_app first")
    return _binding.app, _binding.settings


def configure_pool(concurrency: int, threads: bool) -> None:
    """Recorded by the worker's main process at start-up; sizes the database pool."""
    _pool.concurrency, _pool.threads = max(1, concurrency), threads


def pool_runs_steps_in_main_process() -> bool:
    return _pool.threads


def db_pool_size() -> int:
    # A step holds a connection only for its short claim/read/commit statements, never across
    # the model call, so a many-threaded worker needs far fewer connections than threads. The
    # pool never overflows (see WorkerContext.build): threads wait their turn for a connection
    # rather than open one that is closed again when returned: under bursts that churn cost
    # PostgreSQL a new backend process per step. Kept small so several nodes fit under
    # PostgreSQL's default max_connections=100.
    if not _pool.threads:
        return 2  # prefork/solo: one task at a time, plus the heartbeat
    return min(_pool.concurrency, max(4, _pool.concurrency // 4), 16)


class _NoModel:
    """Stands in for the model client on tool-only nodes, which must never make model calls."""

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("this worker has no SWARM_LLM_BASE_URL; LLM steps belong on swarm.llm workers")


#: How long a warm shutdown waits for this process's model calls in flight to commit.
DRAIN_SECONDS = 60.0


@dataclass(kw_only=True)
class WorkerContext:
    settings: Settings
    store: StateStore
    dispatcher: CeleryDispatcher
    _executor: StepExecutor | None = None
    #: Where the commits of model calls finished on the model loop run (None: no model loop).
    commits: ThreadPoolExecutor | None = None
    _beat_store: StateStore | None = None
    _threads: list[Periodic] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, app: Celery, settings: Settings) -> WorkerContext:
        store = instrument(StateStore(make_engine(settings.db_url, pool_size=db_pool_size(), max_overflow=0)))
        return cls(settings=settings, store=store, dispatcher=CeleryDispatcher(app, store.cluster_id))

    @property
    def cluster_id(self) -> str:
        """This worker's deployment: its database's cluster id (read once, then cached)."""
        return self.store.cluster_id()

    def executor(self) -> StepExecutor:
        """The step executor and this process's lease heartbeat, created on the first step."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = self._make_executor()
        return self._executor

    def _make_executor(self) -> StepExecutor:
        s = self.settings
        llm: Any = ProviderRouter(s) if s.llm_base_url else _NoModel()
        ex = StepExecutor(self.store, llm, default_registry(s), s, owner_id(), McpHub(s))
        if can_await(llm):
            # A task returns its thread once its model call is on this loop; the commit then runs
            # on a few threads of this process's own (commit_pool), not on Celery's.
            ex.model_loop = model_loop()
            self.commits = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="swarm-commit")
        # The heartbeat gets a connection of its own: were it to queue behind busy step threads
        # for a pooled one, a live worker's leases could lapse and its steps run twice.
        self._beat_store = StateStore(make_engine(s.db_url, pool_size=1))
        beat = heartbeat(self._beat_store, ex.owner, s.heartbeat_seconds, s.lease_seconds, steps=ex.in_flight)
        beat.start()
        self._threads.append(beat)
        log.info("worker process %d ready (owner %s, db pool %d)", os.getpid(), ex.owner, db_pool_size())
        return ex

    def close(self) -> None:
        # Warm shutdown: Celery waited for this process's tasks, but an LLM task returns once its
        # call is on the model loop; let those calls answer and commit (the heartbeat still renewing
        # their leases) before the process goes. Past the bound their leases lapse and the sweeper
        # hands them out again.
        drained = self._executor is None or self.commits is None or self._executor.drain(DRAIN_SECONDS)
        if not drained:
            log.warning("shutting down with model calls still in flight: their steps go back when their leases lapse")
        for t in self._threads:
            t.stop()
        if self.commits is not None:
            self.commits.shutdown(wait=False, cancel_futures=True)  # their leases lapse; swept
        if self._executor is not None:
            if self._executor.mcp is not None:
                self._executor.mcp.close()  # this process's MCP stdio servers are reaped
            close = getattr(self._executor.llm, "close", None)
            if close:
                close()
        for store in (self.store, self._beat_store):
            if store is not None:
                store.engine.dispose()

    def forget(self) -> None:
        """Drop an inherited context without touching the parent's sockets."""
        for store in (self.store, self._beat_store):
            if store is not None:
                store.engine.dispose(close=False)


class _ProcessSlot:
    """This process's context. Holds the pid it was built in, so a forked child never uses its
    parent's (whose pools and threads did not survive the fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ctx: WorkerContext | None = None
        self.pid = 0

    def get(self) -> WorkerContext:
        ctx = self.ctx
        if ctx is not None and self.pid == os.getpid():
            return ctx
        with self.lock:
            if self.ctx is None or self.pid != os.getpid():
                if self.ctx is not None:
                    self.ctx.forget()
                self.ctx, self.pid = WorkerContext.build(*_bound()), os.getpid()
            return self.ctx

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # the parent may have held it at fork time
        if self.ctx is not None and self.pid != os.getpid():
            self.ctx.forget()
            self.ctx = None

    def shutdown(self) -> None:
        ctx = self.ctx
        if ctx is not None and self.pid == os.getpid():
            self.ctx = None
            try:
                ctx.close()
            except Exception:  # shutting down anyway; never mask the real exit reason
                log.debug("closing the worker context failed", exc_info=True)


_slot = _ProcessSlot()


def context() -> WorkerContext:
    return _slot.get()


def after_fork() -> None:
    _slot.after_fork()


def shutdown() -> None:
    _slot.shutdown()
