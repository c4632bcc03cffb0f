"""How the server gets runs executed.

* ``cluster`` (SWARM_BROKER_URL set): ready steps are published to Celery; workers anywhere run them.
* ``embedded`` (default): an in-process :class:`~swarm.runtime.LocalRuntime` runs them on threads;
  with no SWARM_LLM_BASE_URL it talks to the built-in simulated model, started here.

Either way the store is the source of truth: the backend only *dispatches*, after the commit.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any, Protocol

from swarm.config import Settings
from swarm.exceptions import ConfigError
from swarm.store.store import StateStore
from swarm.store.types import RunSpec

log = logging.getLogger(__name__)


class Backend(Protocol):
    mode: str

    def submit(self, spec: RunSpec) -> str: ...

    def resume(self, run_id: str) -> int: ...

    def check(self) -> str | None:
        """None if the backend can take work, else what is wrong (for /readyz)."""

    def close(self) -> None: ...


class EmbeddedBackend:
    """Runs steps on this process's thread pools."""

    mode = "embedded"

    def __init__(self, settings: Settings, store: StateStore, *, llm: Any = None) -> None:
        from swarm.runtime import LocalRuntime

        self._stack = ExitStack()
        if not settings.llm_base_url and llm is None:
            from swarm.sim import SimConfig, SimServer

            sim = self._stack.enter_context(SimServer(SimConfig(port=0)))
            log.warning("no SWARM_LLM_BASE_URL set: runs use the built-in simulated model at %s", sim.url)
            settings = settings.model_copy(update={"llm_base_url": sim.url})
        self.runtime = LocalRuntime(settings, store=store, llm=llm)
        self._stack.callback(self.runtime.close)

    def submit(self, spec: RunSpec) -> str:
        return self.runtime.submit(spec)

    def resume(self, run_id: str) -> int:
        from swarm.runtime import pid_is_dead

        # Steps held by a server process that died (kill -9) are free at once, not after their lease.
        self.runtime.store.release_dead_owners(run_id, pid_is_dead)
        refs = self.runtime.store.resume_run(run_id)
        self.runtime.dispatch(refs)
        return len(refs)

    def check(self) -> str | None:
        return None

    def close(self) -> None:
        self._stack.close()


class ClusterBackend:
    """Publishes ready steps to Celery (``swarm.dispatch.celery``); workers do the rest."""

    mode = "cluster"

    def __init__(self, settings: Settings, store: StateStore) -> None:
        try:
            from swarm.dispatch.celery import CeleryDispatcher
        except ImportError as exc:  # pragma: no cover - depends on the installed version
            raise ConfigError(f"SWARM_BROKER_URL is set but the Celery dispatcher is unavailable: {exc}") from exc
        self.settings, self.store = settings, store
        self.dispatcher = CeleryDispatcher.from_settings(settings)

    def submit(self, spec: RunSpec) -> str:
        run_id, refs = self.store.create_run(spec)
        self.dispatcher.dispatch(refs)
        return run_id

    def resume(self, run_id: str) -> int:
        refs = self.store.resume_run(run_id)
        self.dispatcher.dispatch(refs)
        return len(refs)

    def check(self) -> str | None:
        from kombu import connection

        connect: Any = connection.Connection  # kombu is untyped
        try:
            with connect(self.settings.broker_url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            return f"broker unreachable: {type(exc).__name__}"
        return None

    def close(self) -> None:
        close = getattr(self.dispatcher, "close", None)
        if callable(close):
            close()


def make_backend(settings: Settings, store: StateStore) -> Backend:
    if settings.distributed:
        return ClusterBackend(settings, store)
    return EmbeddedBackend(settings, store)
