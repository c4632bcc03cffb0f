"""Runs on this database: executed by this process's threads (embedded) or by Celery workers (cluster).

Either way the store is the truth and the service only *dispatches*, after the commit. Reads,
cancel, events and export are the same for both (:class:`StoreRuns`); they differ in who runs
the steps.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import Any

from swarm.config import Settings
from swarm.domain import budget, files, run_ids
from swarm.domain.approvals import Decision
from swarm.domain.quotas import TenantQuota
from swarm.domain.status import RunStatus, StepStatus
from swarm.exceptions import ConfigError, SwarmError
from swarm.runs.base import Cancelled, Progress, RunRequest, resolve, resolve_step
from swarm.runs.follow import follow_store
from swarm.runtime import LocalRuntime, open_store, run_spec, wait_for_run
from swarm.store.retention import Deleted
from swarm.store.store import StateStore
from swarm.store.types import ApprovalInfo, ArtifactInfo, RunSpec, RunSummary, StepRef

log = logging.getLogger(__name__)


def local_user() -> str:
    """Who decides an approval from this machine's CLI, for the record."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (a container without a passwd entry)
        return "cli"


#: Seconds a stopping embedded service waits for steps in flight to commit.
SHUTDOWN_GRACE = 10.0


def resume_caps(max_usd: float | None, max_tokens: int | None) -> dict[str, int | None]:
    """New spend caps for a resumed run, as the store keeps them (InputError if not > 0)."""
    return {
        "max_cost_pico": None if max_usd is None else budget.parse_usd(max_usd),
        "max_tokens": None if max_tokens is None else budget.parse_tokens(max_tokens),
    }


class StoreRuns:
    """What both local modes share: everything but executing steps."""

    mode = "local"
    where = "this database"

    def __init__(self, settings: Settings, store: StateStore | None = None) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store or open_store(settings)
        #: Applied to tenants' submissions (the API's); a local `swarm run` has no tenant.
        self.quota = TenantQuota(settings.tenant_max_running, settings.tenant_max_runs_per_day)

    def spec(self, request: RunRequest) -> RunSpec:
        """The request with this side's defaults for the limits it leaves open."""
        spec = run_spec(
            self.settings,
            request.task,
            model=request.model,
            max_subagents=request.max_subagents,
            max_tool_calls=request.max_tool_calls,
            max_steps=request.max_steps_per_agent,
            max_wall_seconds=request.max_wall_seconds,
            max_depth=request.max_depth,
            max_spawns_per_turn=request.max_spawns_per_turn,
            tenant=request.tenant,
            max_usd=request.max_usd,
            max_tokens=request.max_tokens,
            approve_tools=request.approve_tools,
            mcp_config=request.mcp,
            provider=request.provider,
            provider_limits=(request.provider_concurrency, request.provider_rpm, request.provider_tpm),
        )
        return dataclasses.replace(spec, attachments=request.attachments, idempotency_key=request.idempotency_key)

    def cancel(self, run_id: str, *, scope: str | None = None) -> Cancelled:
        self.store.run_status(run_id, scope)  # NotFound for another tenant's run
        changed = self.store.cancel_run(run_id)
        return Cancelled(run_id, RunStatus(self.store.run_status(run_id)), changed)

    def summary(self, run_id: str, *, scope: str | None = None) -> RunSummary:
        return self.store.run_summary(run_id, scope)

    def list_runs(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: str | None = None,
        id_prefix: str | None = None,
    ) -> list[RunSummary]:
        return self.store.list_runs(tenant=scope, state=status, limit=limit, offset=offset, id_prefix=id_prefix)

    def resolve(self, run_id: str, *, scope: str | None = None) -> str:
        return resolve(self, run_id, scope)

    def agents(self, run_id: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        return self.store.agent_tree(run_id, scope)

    def timeline(self, run_id: str, *, scope: str | None = None) -> dict[str, Any]:
        summary = self.store.run_summary(run_id, scope)
        return {
            "run_id": run_id,
            "status": summary.status,
            "now": time.time(),
            "created_at": summary.created_at,
            "finished_at": summary.finished_at,
            "agents": self.store.agent_tree(run_id, scope),
            "steps": [{**s, "is_error": bool(s["is_error"])} for s in self.store.steps_timeline(run_id)],
        }

    def events(self, run_id: str, *, after: int = 0, scope: str | None = None) -> Iterator[dict[str, Any]]:
        self.store.run_status(run_id, scope)  # NotFound now, not in the middle of a stream
        return (event for batch in follow_store(self.store, run_id, after) for event in batch)

    def export(self, run_id: str, *, scope: str | None = None) -> Iterator[str]:
        return self.store.trajectory_jsonl(run_id, scope)

    def files(self, run_id: str, *, scope: str | None = None) -> list[ArtifactInfo]:
        return self.store.run_files(run_id, scope)

    def read_file(self, run_id: str, path: str, *, scope: str | None = None) -> tuple[ArtifactInfo, bytes]:
        return self.store.run_file(run_id, files.check_path(path), scope)

    def delete(self, run_id: str, *, scope: str | None = None) -> Deleted:
        return self.store.retention.delete_run(run_id, scope)

    def prune(self, older_than: float, statuses: Iterable[RunStatus], *, dry_run: bool = False) -> Deleted:
        """Delete the runs with one of ``statuses`` that ended more than ``older_than`` seconds ago."""
        return self.store.retention.prune(older_than, statuses, dry_run=dry_run)

    def approvals(
        self,
        run_id: str | None = None,
        *,
        pending: bool = False,
        scope: str | None = None,
        step_prefix: str | None = None,
    ) -> list[ApprovalInfo]:
        if run_id is not None:
            self.store.run_status(run_id, scope)  # NotFound for another tenant's run
        # Without a run only the pending ones, unless a step is looked up (resolve_step).
        pending = pending or (run_id is None and step_prefix is None)
        return self.store.approvals.find(run_id=run_id, tenant=scope, pending=pending, step_prefix=step_prefix)

    def decide(
        self,
        step_id: str,
        decision: Decision,
        note: str | None = None,
        *,
        run_id: str | None = None,
        scope: str | None = None,
        by: str = "",
    ) -> ApprovalInfo:
        if run_id is None or not run_ids.is_whole(step_id):
            found_run, step_id = resolve_step(self, step_id, scope)
            run_id = run_id or found_run
        info, refs = self.store.approvals.decide(
            step_id, decision, note, by or local_user(), run_id=run_id, tenant=scope
        )
        self.dispatch_decided(refs)
        return info

    def dispatch_decided(self, refs: list[StepRef]) -> None:
        """Hand over what a decision made ready. Here nothing runs steps: the sweeper of the
        process running the run re-publishes ready steps nobody started (SWARM_REPUBLISH_AFTER)."""

    def wait(self, run_id: str, on_progress: Progress | None = None) -> RunSummary:
        return wait_for_run(self.store, run_id, on_progress=on_progress)

    def check(self) -> str | None:
        return None

    def provider(self) -> list[dict[str, Any]]:
        from swarm.llm.providers import provider_views

        return provider_views(self.settings)

    def close(self) -> None:
        if self._own_store:
            self.store.engine.dispose()


class EmbeddedRuns(StoreRuns):
    """Runs steps on this process's thread pools. The runtime (and, with no SWARM_LLM_BASE_URL, the
    built-in simulated model) starts with the first submit or resume: reads need neither."""

    mode = "embedded"
    where = "this process"

    def __init__(self, settings: Settings, store: StateStore | None = None, *, llm: Any = None) -> None:
        super().__init__(settings, store)
        self._llm = llm
        self._stack = ExitStack()
        self._runtime: LocalRuntime | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> LocalRuntime:
        with self._lock:
            if self._runtime is None:
                settings = self.settings
                if not settings.llm_base_url and self._llm is None:
                    from swarm.sim import SimConfig, SimServer

                    sim = self._stack.enter_context(SimServer(SimConfig(port=0)))
                    log.warning("no SWARM_LLM_BASE_URL set: runs use the built-in simulated model at %s", sim.url)
                    settings = settings.model_copy(update={"llm_base_url": sim.url})
                self._runtime = LocalRuntime(settings, store=self.store, llm=self._llm)
            return self._runtime

    def submit(self, request: RunRequest) -> str:
        return self.runtime.submit(self.spec(request), self.quota)

    def provider(self) -> list[dict[str, Any]]:
        from swarm.llm.providers import provider_views

        # The runtime's settings: they name the built-in sim's URL, the provider its calls go to.
        with self._lock:
            runtime = self._runtime
        return provider_views(runtime.settings if runtime is not None else self.settings)

    def resume(
        self,
        run_id: str,
        *,
        scope: str | None = None,
        max_usd: float | None = None,
        max_tokens: int | None = None,
    ) -> int:
        self.store.run_status(run_id, scope)
        caps = resume_caps(max_usd, max_tokens)
        # LocalRuntime.resume frees steps of dead local owners at once (a process killed with -9),
        # re-opens the run and adopts it: this process's sweeper looks after it from now on.
        self.runtime.resume(run_id, **caps)
        return len(self.store.steps_of(run_id, [StepStatus.READY, StepStatus.RUNNING]))

    def dispatch_decided(self, refs: list[StepRef]) -> None:
        # A runtime already running (the server, or `swarm run`'s process) takes the step now;
        # otherwise the process that runs the run re-publishes it (its sweeper), or a resume does.
        if self._runtime is not None:
            self._runtime.dispatch(refs)

    def fork(self, run_id: str, at: str, *, message: str | None = None, scope: str | None = None) -> str:
        return self.runtime.fork(run_id, at, message=message, tenant=scope, quota=self.quota)

    def adopt_interrupted(self) -> list[str]:
        """Resume the API's runs that were running when the server last stopped.

        The embedded runtime only looks after runs it started, so after a restart nothing would
        continue them. Runs submitted through the API always carry a tenant; runs without one
        belong to `swarm run` processes, which may still be alive, and are left alone.
        """
        adopted = []
        for run in self.store.list_runs(status=RunStatus.RUNNING, limit=100_000):
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

    def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop taking steps, give the ones in flight ``grace`` seconds to commit, then stop.

        Order matters: closing the model client (or the built-in sim) under calls in flight would
        fail them, and a failed model call fails its agent. A step still running after the grace
        period keeps its lease; it expires and the step runs again after the next start.
        """
        rt = self._runtime
        if rt is not None:
            rt.dispatcher.close(wait=False)  # no new steps; queued ones stay ready in the database
            drain = threading.Thread(target=rt.dispatcher.close, kwargs={"wait": True}, daemon=True)
            drain.start()
            drain.join(grace)
            rt.close()
        self._stack.close()
        super().close()


class ClusterRuns(StoreRuns):
    """Publishes ready steps to Celery (:mod:`swarm.dispatch.celery`); workers anywhere do the rest."""

    mode = "cluster"
    where = "the cluster"

    def __init__(self, settings: Settings, store: StateStore | None = None) -> None:
        try:
            from swarm.dispatch.celery import CeleryDispatcher
        except ImportError as exc:  # pragma: no cover - depends on the installed version
            raise ConfigError(f"SWARM_BROKER_URL is set but the Celery dispatcher is unavailable: {exc}") from exc
        super().__init__(settings, store)
        self.dispatcher = CeleryDispatcher.from_settings(settings, self.store.cluster_id)

    def submit(self, request: RunRequest) -> str:
        run_id, refs = self.store.create_run(self.spec(request), self.quota)
        self.dispatcher.dispatch(refs)
        return run_id

    def resume(
        self,
        run_id: str,
        *,
        scope: str | None = None,
        max_usd: float | None = None,
        max_tokens: int | None = None,
    ) -> int:
        self.store.run_status(run_id, scope)
        caps = resume_caps(max_usd, max_tokens)
        # owner None: the cluster looks after it (a run an embedded process started included).
        refs = self.store.resume_run(run_id, max_cost_pico=caps["max_cost_pico"], max_tokens=caps["max_tokens"])
        self.dispatcher.dispatch(refs)
        return len(refs)

    def dispatch_decided(self, refs: list[StepRef]) -> None:
        self.dispatcher.dispatch(refs)

    def fork(self, run_id: str, at: str, *, message: str | None = None, scope: str | None = None) -> str:
        fork_id, refs = self.store.fork_run(run_id, at, message=message, tenant=scope, quota=self.quota)
        self.dispatcher.dispatch(refs)
        return fork_id

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
        super().close()
