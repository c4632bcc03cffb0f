"""Wiring: settings → store, model client, tools, executor and a dispatcher.

:class:`LocalRuntime` is the embedded mode: everything in this process, nothing to install.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from swarm.config import Settings
from swarm.domain import approvals, budget, run_limits
from swarm.domain.quotas import TenantQuota
from swarm.domain.status import RUN_TERMINAL, RunStatus
from swarm.store.store import StateStore, owner_id
from swarm.store.types import Attachment, RunSpec, RunSummary, StepRef

if TYPE_CHECKING:
    from swarm.engine.background import Periodic

log = logging.getLogger(__name__)


def open_store(settings: Settings, *, pool_size: int = 20) -> StateStore:
    """Open the configured database, creating the schema on the embedded SQLite default."""
    from swarm.store.db import private_dir
    from swarm.store.migrate import ensure_schema

    if not settings.database_url:  # the embedded database lives in SWARM_HOME: keep it private
        private_dir(settings.home)
    store = StateStore.from_url(settings.db_url, pool_size=pool_size)
    ensure_schema(store.engine)
    return store


def run_spec(
    settings: Settings,
    task: str,
    *,
    model: str | None = None,
    max_subagents: int | None = None,
    max_tool_calls: int | None = None,
    max_steps: int | None = None,
    max_wall_seconds: float | None = None,
    max_depth: int | None = None,
    max_spawns_per_turn: int | None = None,
    attachments: Sequence[Path] = (),
    tenant: str | None = None,
    max_usd: float | None = None,
    max_tokens: int | None = None,
    approve_tools: Sequence[str] = (),
    mcp_config: str | None = None,
    provider: str | None = None,
    provider_limits: tuple[int | None, int | None, int | None] = (None, None, None),
) -> RunSpec:
    """A run's spec: what was given, the settings' defaults for the rest. ``approve_tools`` adds to
    the deployment's SWARM_APPROVE_TOOLS (``domain.approvals.merge``), never replaces it.
    ``mcp_config`` (the run's own mcpServers JSON) is checked here: InputError saying what is wrong."""
    usd = settings.max_usd if max_usd is None else max_usd
    from swarm.domain.capacity import ProviderLimits
    from swarm.llm.providers import check_run_provider

    # InputError for an unknown name or a limit above the account's; the model defaults to the provider's.
    chosen = check_run_provider(settings, provider, ProviderLimits(*provider_limits))
    if mcp_config is not None:
        from swarm.tools.mcp_hub import check_config

        allowed = {n.strip() for n in settings.mcp_run_vars.split(",") if n.strip()}
        mcp_config = check_config(mcp_config, "the run's MCP config", allowed)
    return RunSpec(
        task=task,
        model=model or chosen.model,
        max_subagents=settings.max_subagents if max_subagents is None else max_subagents,
        max_tool_calls=settings.max_tool_calls if max_tool_calls is None else max_tool_calls,
        max_steps_per_agent=max_steps or settings.max_steps_per_agent,
        max_wall_seconds=max_wall_seconds or settings.max_wall_seconds,
        max_depth=max_depth or settings.max_depth,
        max_spawns_per_turn=run_limits.BOUNDS["max_spawns_per_turn"].check(max_spawns_per_turn),
        tenant=tenant,
        attachments=tuple(load_attachment(p) for p in attachments),
        max_cost_pico=None if usd is None else budget.parse_usd(usd),
        max_tokens=settings.max_tokens if max_tokens is None else budget.parse_tokens(max_tokens),
        approve_tools=approvals.merge(
            approvals.parse_patterns(settings.approve_tools), approvals.parse_patterns(approve_tools)
        ),
        approval_timeout=approvals.parse_timeout(settings.approval_timeout),
        mcp_config=mcp_config,
        provider=provider or None,
        provider_concurrency=provider_limits[0],
        provider_rpm=provider_limits[1],
        provider_tpm=provider_limits[2],
    )


def load_attachment(path: Path) -> Attachment:
    import mimetypes

    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(path.name, path.read_bytes(), mime)


def wait_for_run(
    store: StateStore,
    run_id: str,
    *,
    timeout: float | None = None,
    poll: float = 0.25,
    on_progress: Callable[[RunSummary, dict[str, int]], None] | None = None,
) -> RunSummary:
    """Wait for a run in this database to end, reading its status — or, for ``on_progress``, its
    summary and agent counts — every ``poll`` seconds (a summary computes critical steps)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if on_progress:  # the summary it shows carries the status too
            summary = store.run_summary(run_id)
            on_progress(summary, store.agent_counts(run_id))
            if summary.status in RUN_TERMINAL:
                return summary
        elif store.run_status(run_id) in RUN_TERMINAL:
            return store.run_summary(run_id)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still running after {timeout} s")
        time.sleep(poll)


def pid_is_dead(owner: str) -> bool:
    """True when *owner* ("host:pid:nonce") was a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LocalRuntime:
    """Runs swarms in this process: thread pools for steps, a heartbeat and a sweeper."""

    def __init__(
        self, settings: Settings, *, store: StateStore | None = None, llm: Any = None, tools: Any = None
    ) -> None:
        # Executing imports the engine, the model client and the tools; reading runs needs none.
        from swarm.dispatch.local import LocalDispatcher
        from swarm.engine.background import Periodic, heartbeat, sweeper
        from swarm.engine.executor import StepExecutor
        from swarm.llm.routing import ProviderRouter
        from swarm.tools.mcp_hub import McpHub

        self.settings = settings
        self.store = store or open_store(settings)
        self.llm = llm or ProviderRouter(settings)  # a client per provider (SWARM_PROVIDERS)
        if tools is None:
            from swarm.tools.builtin import default_registry

            tools = default_registry(settings)
        self.tools = tools
        self.owner = owner_id()
        self._runs: set[str] = set()
        self.mcp = McpHub(settings)  # SWARM_MCP_CONFIG is read (and checked) here, at start
        self.executor = StepExecutor(self.store, self.llm, self.tools, settings, self.owner, self.mcp)
        self.executor.model_loop = _model_loop(self.llm)
        self.dispatcher = LocalDispatcher(
            self.executor, llm_threads=settings.llm_max_concurrency, tool_threads=settings.tool_concurrency
        )
        self._threads: list[Periodic] = [
            heartbeat(
                self.store,
                self.owner,
                settings.heartbeat_seconds,
                settings.lease_seconds,
                steps=self.executor.in_flight,
                runs=lambda: set(self._runs),
            ),
            # Only this process's runs: an abandoned run in the same database is not silently revived.
            sweeper(
                self.store,
                settings.sweep_interval,
                settings.republish_after,
                self.dispatcher.dispatch,
                runs=lambda: set(self._runs),
                max_crashes=settings.step_max_crashes,
            ),
        ]
        if settings.retention_days is not None:
            # Every embedded process with the setting prunes: deleting a run twice at once is
            # harmless (the second finds fewer rows), and a pass is cheap when nothing is due.
            from swarm.engine.retention import RetentionPass

            self._threads.append(
                Periodic("swarm-retention", settings.sweep_interval, RetentionPass(self.store, settings.retention_days))
            )
        for t in self._threads:
            t.start()

    def dispatch(self, refs: Sequence[StepRef]) -> None:
        self.dispatcher.dispatch(refs)

    def submit(self, spec: RunSpec, quota: TenantQuota | None = None) -> str:
        run_id, refs = self.store.create_run(spec, quota, (self.owner, self.settings.lease_seconds))
        self._runs.add(run_id)
        self.dispatch(refs)
        return run_id

    def fork(
        self,
        run_id: str,
        at: str,
        *,
        message: str | None = None,
        tenant: str | None = None,
        quota: TenantQuota | None = None,
    ) -> str:
        fork_id, refs = self.store.fork_run(run_id, at, message=message, tenant=tenant, quota=quota)
        self._runs.add(fork_id)
        self.dispatch(refs)
        return fork_id

    def resume(self, run_id: str, *, max_cost_pico: int | None = None, max_tokens: int | None = None) -> None:
        was_running = self.store.run_status(run_id) == RunStatus.RUNNING
        # A step whose dead owner was its last allowed crash is given up here, and that may end
        # the run (an LLM step of the orchestrator): then it stays ended, with that reason.
        self.store.release_dead_owners(run_id, pid_is_dead, self.settings.step_max_crashes)
        if was_running and self.store.run_status(run_id) != RunStatus.RUNNING:
            return
        refs = self.store.resume_run(
            run_id, max_cost_pico=max_cost_pico, max_tokens=max_tokens, owner=(self.owner, self.settings.lease_seconds)
        )
        self._runs.add(run_id)
        self.dispatch(refs)

    def wait(self, run_id: str, *, timeout: float | None = None, poll: float = 0.25) -> RunSummary:
        return wait_for_run(self.store, run_id, timeout=timeout, poll=poll)

    def close(self) -> None:
        for t in self._threads:
            t.stop()
        self.dispatcher.close()
        self.mcp.close()
        close = getattr(self.llm, "close", None)
        if close:
            close()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _model_loop(llm: Any) -> Any:
    """This process's model loop if ``llm``'s calls can wait on it (swarm.llm.aio), else None."""
    from swarm.llm.aio import can_await, model_loop

    return model_loop() if can_await(llm) else None
