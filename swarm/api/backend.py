"""How the server gets runs executed.

* ``cluster`` (SWARM_BROKER_URL set): ready steps are published to Celery; workers anywhere run them.
* ``embedded`` (default): an in-process :class:`~swarm.runtime.LocalRuntime` runs them on threads;
  with no SWARM_LLM_BASE_URL it talks to the built-in simulated model, started here.

Either way the store is the source of truth: the backend only *dispatches*, after the commit.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import Any, Protocol

from swarm.config import Settings
from swarm.domain.status import StepStatus
from swarm.exceptions import ConfigError, SwarmError
from swarm.store.store import StateStore
from swarm.store.types import RunSpec

log = logging.getLogger(__name__)

#: Seconds a stopping server waits for steps in flight to commit.
SHUTDOWN_GRACE = 10.0


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

    def submit(self, spec: RunSpec) -> str:
        return self.runtime.submit(spec)

    def resume(self, run_id: str) -> int:
        # LocalRuntime.resume frees steps of dead local owners at once (a server killed with -9),
        # re-opens the run and adopts it: this process's sweeper looks after it from now on.
        self.runtime.resume(run_id)
        return len(self.runtime.store.steps_of(run_id, [StepStatus.READY, StepStatus.RUNNING]))

    def adopt_interrupted(self) -> list[str]:
        """Resume the API's runs that were running when the server last stopped.

        The embedded runtime only looks after runs it started, so after a restart nothing would
        continue them. Runs submitted through the API always carry a tenant; runs without one
        belong to `swarm run` processes, which may still be alive, and are left alone.
        """
        adopted = []
        for run in self.runtime.store.list_runs(status="running", limit=100_000):
            if run.tenant is None:
                continue
            try:
                self.runtime.resume(run.id)
            except SwarmError as exc:
                log.warning("could not resume interrupted run %s: %s", run.id, exc)
                continue
            adopted.append(run.id)
        if adopted:
            log.warning("resumed %d run(s) interrupted by the last shutdown", len(adopted))
        return adopted

    def check(self) -> str | None:
        return None

    def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop taking steps, give the ones in flight ``grace`` seconds to commit, then stop.

        Order matters: closing the model client (or the built-in sim) under calls in flight would
        fail them, and a failed model call fails its agent. A step still running after the grace
        period keeps its lease; it expires and the step runs again after the next start.
        """
        rt = self.runtime
        rt.dispatcher.close(wait=False)  # no new steps; queued ones stay ready in the database
        drain = threading.Thread(target=rt.dispatcher.close, kwargs={"wait": True}, daemon=True)
        drain.start()
        drain.join(grace)
        rt.close()
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
    backend = EmbeddedBackend(settings, store)
    backend.adopt_interrupted()
    return backend
