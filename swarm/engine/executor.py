"""Execute one durable step: claim it, do its single piece of work, commit under the fence.

The same code runs in the in-process dispatcher and in Celery workers; neither knows SQL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from swarm import logs
from swarm.config import Settings
from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT
from swarm.domain import fanout, mcp, pricing, prompts, sanitize
from swarm.domain import images as domain_images
from swarm.domain.llm import CallContext, LLMResponse
from swarm.domain.status import StepKind
from swarm.domain.workspace import Changes, Quota
from swarm.engine import images, model_step
from swarm.engine.file_cache import FileCache
from swarm.engine.orchestration import ASSIGN_TASKS_SCHEMA, ORCHESTRATION_SCHEMAS
from swarm.engine.workspace import Workspace
from swarm.exceptions import (
    FenceLost,
    LLMError,
    StoreDataError,
    StoreUnavailable,
)
from swarm.retry import RetryPolicy
from swarm.store.db import private_dir
from swarm.store.store import StateStore
from swarm.store.types import AgentContext, Claim, StepRef
from swarm.tools.base import ToolContext, ToolRegistry, ToolResult
from swarm.tools.mcp_hub import McpHub
from swarm.tools.plugin import plugin_settings

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Runs the rest of a step (its commit) on a thread of the caller's, and dispatches what it returns.
Later = Callable[[Callable[[], list[StepRef]]], None]

#: How a claimed step rides out a database outage (connections killed, a Postgres restart) in its
#: reads and its commit: for up to a minute. The model call or tool run is already paid for;
#: giving up means doing it again on another worker. The heartbeat keeps the lease meanwhile.
STORE_OUTAGE = RetryPolicy(deadline=60.0, base=0.1, cap=2.0)
#: How the claim rides out an outage (or a worker pool with no free connection). Nothing is paid
#: for yet, so it gives up after a few seconds and leaves the step to the sweeper.
CLAIM_OUTAGE = RetryPolicy(attempts=4, base=0.5, cap=2.0)


class LLMProtocol(Protocol):
    """What the executor needs from a model client (``swarm.llm.client.LLMClient``)."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        ctx: CallContext = ...,
        *,
        model: str | None = None,
        still_wanted: Callable[[], bool] | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse: ...


class ModelIO(Protocol):
    """Where model calls wait without a thread: ``swarm.llm.aio.ModelLoop``."""

    def acomplete(
        self, llm: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: CallContext, **kw: Any
    ) -> Coroutine[Any, Any, LLMResponse]: ...

    def submit(self, coro: Coroutine[Any, Any, LLMResponse]) -> Future[LLMResponse]: ...


def _records(result: ToolResult, changes: Changes | None) -> list[dict[str, Any]]:
    """The images the agent's next model call is shown: the result's own, and the PNG and JPEG
    files the call wrote (downscaled once here, and stored with the result: ``domain.images``).
    Nothing if that fails: an image must never fail the tool call it came with."""
    if not result.images and not (changes and any(map(domain_images.is_image_path, changes.files))):
        return []
    try:
        return [p.record() for p in images.collect(result.images, changes)]
    except Exception:
        log.exception("the images of this tool call are not shown to the model")
        return []


def _file_cache(settings: Settings) -> FileCache | None:
    """This machine's cache of run files, in SWARM_HOME; None if it is off or SWARM_HOME unusable
    (tool calls then read every file from the database)."""
    if settings.workspace_cache_bytes <= 0:
        return None
    try:
        root = private_dir(settings.home) / "cache" / "files"
    except OSError as exc:
        log.warning("no local cache of run files (%s): %s", settings.home, exc)
        return None
    return FileCache(root, settings.workspace_cache_bytes)


class OfferedTools(Collection[str]):
    """The tool names an agent was offered, plus any ``mcp__<server>__…`` of a server that could not
    be listed this turn: such a call still reaches a tool step, which tells the model why it failed."""

    def __init__(self, names: Iterable[str], down: Iterable[str] = ()) -> None:
        self._names = list(names)
        self._down = tuple(f"{mcp.PREFIX}{server}__" for server in down)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._names or (bool(self._down) and name.startswith(self._down)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class StepExecutor:
    def __init__(
        self,
        store: StateStore,
        llm: LLMProtocol,
        tools: ToolRegistry,
        settings: Settings,
        owner: str,
        mcp: McpHub | None = None,
    ) -> None:
        self.store, self.llm, self.tools, self.settings, self.owner = store, llm, tools, settings, owner
        #: The MCP servers' tools (SWARM_MCP_CONFIG), offered next to the registry's.
        self.mcp = mcp
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.quota = Quota.from_settings(settings)
        self.plugin_settings = plugin_settings(settings)
        self.file_cache = _file_cache(settings)
        #: Read when the worker starts: an error in SWARM_PRICES stops it there, naming the line.
        self.prices = pricing.load(settings.prices)
        #: Where model calls wait without a thread (:meth:`execute`'s ``later``); None: in the caller's thread.
        self.model_loop: ModelIO | None = None

    def in_flight(self) -> list[str]:
        """Steps being worked on right now: the only leases this owner's heartbeat may renew."""
        with self._lock:
            return list(self._in_flight)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the steps in flight (model calls on the loop included)
        to commit; whether none is left. A warm shutdown calls it so that the calls it paid for
        are committed, not asked again by another worker once their leases lapse."""
        deadline = time.monotonic() + timeout
        while self.in_flight():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def execute(self, step_id: str, later: Later | None = None) -> list[StepRef]:
        """Run a step if it can be claimed; return the steps its commit made ready.

        A duplicate delivery finds the step already claimed or done and returns nothing.

        ``later``: an LLM step may then return (nothing) as soon as its model call is on the
        process's model loop (``swarm.llm.aio``); ``later`` is handed the rest of the step (its
        commit), to run on a thread of the caller's and dispatch what it returns. The step stays
        in :meth:`in_flight` (its lease renewed) until then.
        """
        # Each claim that ends neither in a commit nor in a release crashed its worker: after
        # step_max_crashes of them nobody claims the step again and the sweeper gives it up.
        s = self.settings
        claim = CLAIM_OUTAGE.call(
            lambda: self.store.claim(step_id, self.owner, s.lease_seconds, s.step_max_crashes), (StoreUnavailable,)
        )
        if claim is None:
            return []
        with self._lock:
            self._in_flight.add(step_id)
        deferred = False
        try:
            if claim.kind != StepKind.LLM:
                return self._guarded(claim, lambda: self._tool_step(claim))
            turn = self._guarded(claim, lambda: model_step.prepare(self, claim))
            if not isinstance(turn, model_step.Turn):
                return turn
            if later is None or self.model_loop is None:
                return self._guarded(claim, lambda: model_step.finish(self, claim, turn, self._call(claim, turn)))
            self._defer(claim, turn, later)
            deferred = True
            return []
        finally:
            if not deferred:
                self._done(step_id)

    def _call(self, claim: Claim, turn: model_step.Turn) -> LLMResponse | BaseException:
        try:
            return self.llm.complete(
                turn.messages, turn.schemas, turn.call, **model_step.call_kwargs(self, claim, turn)
            )
        except (LLMError, FenceLost) as exc:
            return exc

    def _defer(self, claim: Claim, turn: model_step.Turn, later: Later) -> None:
        """Put the model call on the model loop; its outcome goes to ``later`` to be committed."""
        assert self.model_loop is not None
        coro = self.model_loop.acomplete(
            self.llm, turn.messages, turn.schemas, turn.call, **model_step.call_kwargs(self, claim, turn)
        )

        def commit(outcome: LLMResponse | BaseException) -> list[StepRef]:
            try:
                return self._guarded(claim, lambda: model_step.finish(self, claim, turn, outcome))
            finally:
                self._done(claim.step_id)

        def arrived(future: Future[LLMResponse]) -> None:
            exc = future.exception()
            outcome: LLMResponse | BaseException = exc if exc is not None else future.result()
            try:
                later(lambda: commit(outcome))
            except Exception:
                # The caller's threads are shutting down, but an answer that arrived is still
                # committed (as a threaded call finishing after close always was): a model call
                # paid for is not thrown away. What it makes ready waits for a sweeper; if this
                # process exits first, the lease lapses and the call is asked again.
                threading.Thread(
                    target=commit, args=(outcome,), name=f"swarm-late-commit-{claim.step_id[:8]}", daemon=True
                ).start()

        self.model_loop.submit(coro).add_done_callback(arrived)

    def _done(self, step_id: str) -> None:
        with self._lock:
            self._in_flight.discard(step_id)

    def _guarded(self, claim: Claim, work: Callable[[], T]) -> T | list[StepRef]:
        """``work`` for ``claim``, with the step's ids on every log line and its store failures
        handled: refused data ends the step, a lost fence discards the result, an outage is raised
        (the lease will expire and the sweeper will hand the step to someone else)."""
        step_id = claim.step_id
        extra = {"run_id": claim.run_id, "step_id": step_id, "agent_id": claim.agent_id}
        # Whatever the model client or a tool logs meanwhile is about this step too.
        with logs.bound(**extra):
            try:
                try:
                    return work()
                except StoreDataError as exc:
                    log.warning("the database refused the data of step %s: %s", step_id, exc, extra=extra)
                    return self._refused(claim, exc)
            except FenceLost:
                log.info("step %s lost its claim (cancelled or taken over); result discarded", step_id, extra=extra)
                return []
            except StoreUnavailable:
                log.warning("database unavailable while running step %s; it will be retried", step_id, extra=extra)
                raise

    def _refused(self, claim: Claim, exc: StoreDataError) -> list[StepRef]:
        """The database refused what this step would commit. Committing the same data again
        would fail the same way (after paying for the model call or tool run again), so the step
        ends now: a tool call's result becomes a tool error; an LLM step fails its agent."""
        if claim.kind == StepKind.TOOL:
            text = sanitize.text(prompts.TOOL_RESULT_REFUSED.format(name=claim.tool_name, error=exc))
            with contextlib.suppress(StoreDataError):
                return self._durable(lambda: self.store.commit_tool(claim, text, True))
        error = f"the database refused this step's data, so it is not retried ({exc})"
        return self._durable(lambda: self.store.fail_step(claim, error))

    def _durable(self, fn: Callable[[], T]) -> T:
        """Call the store, riding out a database outage (:data:`STORE_OUTAGE`). Safe to repeat: a
        commit that did land but whose reply was lost fails the fence on retry."""
        return STORE_OUTAGE.call(fn, (StoreUnavailable,))

    # ------------------------------------------------------------------ LLM

    def available_tools(self, ctx: AgentContext) -> tuple[Collection[str], list[dict[str, Any]]]:
        schemas = list(self.tools.schemas())
        if ctx.agent.depth < ctx.agent.max_depth:
            fanout = [ASSIGN_TASKS_SCHEMA] if self.settings.tool_assign_tasks else []
            schemas = ORCHESTRATION_SCHEMAS + fanout + schemas
        down: set[str] = set()
        if self.mcp is not None and (self.mcp.deployment or ctx.agent.mcp_config):
            servers = self.mcp.servers(ctx.agent.mcp_config)
            offered, down = self.mcp.schemas(servers, is_orchestrator=ctx.agent.depth == 0)
            schemas += offered
        return OfferedTools([s["function"]["name"] for s in schemas], down), schemas

    # ----------------------------------------------------------------- tools

    def _tool_step(self, claim: Claim) -> list[StepRef]:
        name = claim.tool_name or ""
        args: dict[str, Any] = json.loads(claim.arguments or "{}") if (claim.arguments or "").strip() else {}
        # Parsed arguments may hold what their JSON text escaped (a "\u0000" is a NUL).
        if name == CREATE_SUBAGENT:
            return self._durable(
                lambda: self.store.create_subagent(claim, args["name"], sanitize.text(args["system_prompt"]))
            )
        if name == ASSIGN_TASK:
            return self._durable(
                lambda: self.store.launch_subagent(claim, sanitize.text(args["agent"]), sanitize.text(args["prompt"]))
            )
        if name == ASSIGN_TASKS:
            return self._assign_tasks(claim, args)
        if self.mcp is not None and mcp.server_of(name) is not None:
            config = self._durable(lambda: self.store.run_mcp_config(claim.run_id))
            result = self._mcp_call(name, args, config)
            content = sanitize.text(result.content)
            images = _records(result, None)  # an MCP image result reaches the model like a plot
            return self._durable(lambda: self.store.commit_tool(claim, content, result.is_error, None, images))
        tool = self.tools.get(name)
        if tool is not None and tool.uses_workspace:
            return self._workspace_tool_step(claim, tool, args)
        if tool is None:  # the registry changed between the turn and now (a redeploy)
            result = ToolResult(prompts.TOOL_UNAVAILABLE.format(name=name), is_error=True)
        else:
            result = self._run_tool(tool, args, claim, None)
        content = sanitize.text(result.content)  # tool output may hold NULs (binary data, a crash dump)
        shown = _records(result, None)
        return self._durable(lambda: self.store.commit_tool(claim, content, result.is_error, None, shown))

    def _assign_tasks(self, claim: Claim, args: dict[str, Any]) -> list[StepRef]:
        # The turn's commit checked the arguments (planner): they expand to distinct prompts.
        expanded = fanout.expand(sanitize.text(args["prompt_template"]), args["items"])
        if isinstance(expanded, str):  # not after that check; said to the model all the same
            return self._durable(lambda: self.store.commit_tool(claim, expanded, True))
        prompts_ = [sanitize.text(p) for p in expanded]
        return self._durable(lambda: self.store.launch_subagents(claim, sanitize.text(args["agent"]), prompts_))

    def _workspace_tool_step(self, claim: Claim, tool: Any, args: dict[str, Any]) -> list[StepRef]:
        """A tool call in the run's files. They are restored to disk about 1 MiB at a time (or from
        this machine's cache), and the workspace stays until the commit has read the changed files,
        one at a time: memory does not grow with the run's files."""
        with Workspace(claim.run_id, quota=self.quota, cache=self.file_cache) as ws:
            if claim.run_has_files:
                self._durable(lambda: ws.restore(self.store))
            result = self._run_tool(tool, args, claim, ws.path)
            changes = ws.changed()
            content = sanitize.text(result.content)  # tool output may hold NULs (binary data, a crash dump)
            shown = _records(result, changes)  # read while the workspace is still there
            return self._durable(lambda: self.store.commit_tool(claim, content, result.is_error, changes, shown))

    def _mcp_call(self, name: str, args: dict[str, Any], config: str | None) -> ToolResult:
        assert self.mcp is not None
        try:
            return self.mcp.call(self.mcp.servers(config), name, args)
        except Exception as exc:  # an MCP client bug must not kill the run either
            log.exception("MCP call %s crashed", name)
            return ToolResult(
                prompts.TOOL_FAILED.format(name=name, error=f"{type(exc).__name__}: {exc}"), is_error=True
            )

    def _run_tool(self, tool: Any, args: dict[str, Any], claim: Claim, path: Any) -> ToolResult:
        settings = self.plugin_settings if tool.name in self.tools.plugins else self.settings
        ctx = ToolContext(
            run_id=claim.run_id, agent_id=claim.agent_id, step_id=claim.step_id, workspace=path, settings=settings
        )
        try:
            result: ToolResult = tool.run(args, ctx)
        except Exception as exc:  # a tool bug must not kill the run: the model hears about it
            log.exception("tool %s crashed", tool.name)  # with the step's ids (logs.bound in execute)
            result = ToolResult(
                prompts.TOOL_FAILED.format(name=tool.name, error=f"{type(exc).__name__}: {exc}"), is_error=True
            )
        return result
