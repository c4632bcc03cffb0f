"""Execute one durable step: claim it, do its single piece of work, commit under the fence.

The same code runs in the in-process dispatcher and in Celery workers; neither knows SQL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from swarm import logs
from swarm.config import Settings
from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT
from swarm.domain import budget, fanout, mcp, pricing, prompts, sanitize
from swarm.domain import images as domain_images
from swarm.domain.llm import CallContext, LLMResponse, cache_key
from swarm.domain.status import StepKind
from swarm.domain.workspace import Changes, Quota
from swarm.engine import images, spend
from swarm.engine.file_cache import FileCache
from swarm.engine.orchestration import ASSIGN_TASKS_SCHEMA, ORCHESTRATION_SCHEMAS
from swarm.engine.planner import plan_turn
from swarm.engine.workspace import Workspace
from swarm.exceptions import (
    FenceLost,
    LLMAuthError,
    LLMError,
    LLMQuotaExceeded,
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

    def in_flight(self) -> list[str]:
        """Steps being worked on right now: the only leases this owner's heartbeat may renew."""
        with self._lock:
            return list(self._in_flight)

    def execute(self, step_id: str) -> list[StepRef]:
        """Run a step if it can be claimed; return the steps its commit made ready.

        A duplicate delivery finds the step already claimed or done and returns nothing.
        """
        # Each claim that ends neither in a commit nor in a release crashed its worker: after
        # step_max_crashes of them nobody claims the step again and the sweeper gives it up.
        s = self.settings
        claim = CLAIM_OUTAGE.call(
            lambda: self.store.claim(step_id, self.owner, s.lease_seconds, s.step_max_crashes), (StoreUnavailable,)
        )
        if claim is None:
            return []
        extra = {"run_id": claim.run_id, "step_id": claim.step_id, "agent_id": claim.agent_id}
        with self._lock:
            self._in_flight.add(step_id)
        # Whatever the model client or a tool logs meanwhile is about this step too.
        with logs.bound(**extra):
            try:
                try:
                    if claim.kind == StepKind.LLM:
                        return self._llm_step(claim)
                    return self._tool_step(claim)
                except StoreDataError as exc:
                    log.warning("the database refused the data of step %s: %s", step_id, exc, extra=extra)
                    return self._refused(claim, exc)
            except FenceLost:
                log.info("step %s lost its claim (cancelled or taken over); result discarded", step_id, extra=extra)
                return []
            except StoreUnavailable:
                # The lease will expire and the sweeper will hand the step to someone else.
                log.warning("database unavailable while running step %s; it will be retried", step_id, extra=extra)
                raise
            finally:
                with self._lock:
                    self._in_flight.discard(step_id)

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

    def _llm_step(self, claim: Claim) -> list[StepRef]:
        vision = self.settings.llm_vision
        ctx = self._durable(lambda: self.store.agent_context(claim, vision=vision))
        names, schemas = self.available_tools(ctx)
        last_step = ctx.agent.steps + 1 >= ctx.agent.max_steps
        messages = list(ctx.messages)
        if last_step:
            messages.append({"role": "user", "content": prompts.LAST_STEP_NOTE})
        reserved, max_tokens, hold = (0, 0), None, None
        tenant_cap = self._tenant_cap(ctx)
        if ctx.agent.budgeted or tenant_cap is not None:
            # Reserve the call's worst case first: no call starts past a cap.
            max_tokens = self.settings.llm_max_tokens
            size = budget.prompt_bytes(messages, schemas)
            worst = budget.worst_case(size, max_tokens, self.prices.price(ctx.agent.model))
            wait = self.settings.llm_timeout + self.settings.lease_seconds
            if ctx.agent.budgeted:
                reason = spend.reserve(
                    self.store,
                    claim.run_id,
                    ctx.agent.model,
                    worst,
                    still_wanted=lambda: self.store.still_claimed(claim),
                    max_wait=wait,
                    usd_capped=ctx.agent.max_cost_pico is not None,
                )
                if reason is not None:
                    return self._durable(lambda: self.store.fail_step(claim, reason, fail_run=True))
                reserved = (worst.pico or 0, worst.tokens)
            if tenant_cap is not None and ctx.agent.tenant is not None:
                held = (
                    prompts.BUDGET_NO_PRICE.format(model=ctx.agent.model)
                    if worst.pico is None
                    else spend.reserve_tenant(
                        self.store,
                        ctx.agent.tenant,
                        tenant_cap,
                        worst.pico,
                        still_wanted=lambda: self.store.still_claimed(claim),
                        max_wait=wait,
                    )
                )
                if isinstance(held, str):
                    return self._durable(lambda: self.store.fail_step(claim, held, fail_run=True, release=reserved))
                hold = held
        try:
            refs, cost = self._call_and_commit(claim, ctx, messages, schemas, names, last_step, reserved, max_tokens)
        except (FenceLost, StoreDataError):
            if reserved != (0, 0):  # the call will not commit: its reservation goes back
                self._durable(lambda: self.store.release_reservation(claim.run_id, *reserved))
            if hold is not None:
                self._durable(lambda: self.store.budgets.release_tenant(hold.tenant, hold.day, hold.pico))
            raise
        if hold is not None:  # committed (cost) or failed (None): the tenant's day is settled
            self._durable(lambda: self.store.budgets.settle_tenant(hold.tenant, hold.day, hold.pico, cost or 0))
        return refs

    def _tenant_cap(self, ctx: AgentContext) -> int | None:
        """Picodollars the run's tenant may spend today, if a daily cap is set and the run has one."""
        usd = self.settings.tenant_max_usd_per_day
        return None if usd is None or ctx.agent.tenant is None else pricing.to_pico(usd)

    def _call_and_commit(
        self,
        claim: Claim,
        ctx: AgentContext,
        messages: list[dict[str, Any]],
        schemas: list[dict[str, Any]],
        names: Collection[str],
        last_step: bool,
        reserved: tuple[int, int],
        max_tokens: int | None,
    ) -> tuple[list[StepRef], int | None]:
        """The model call, and its commit (or the step's failure), settling ``reserved``; with the
        call's cost once committed (None: it failed, or its model has no price)."""
        try:
            response = self.llm.complete(
                messages,
                schemas,
                CallContext(
                    claim.run_id,
                    claim.agent_id,
                    claim.step_id,
                    cache_key(claim.run_id, ctx.agent.name),
                    ctx.agent.provider or "",
                    ctx.agent.provider_limits,
                ),
                model=ctx.agent.model,
                still_wanted=lambda: self.store.still_claimed(claim),
                max_tokens=max_tokens,
            )
        except (LLMAuthError, LLMQuotaExceeded) as exc:
            # Retrying cannot help and burns quota: end the whole run now, with the reason.
            error = f"{type(exc).__name__}: {exc}"
            return self._durable(lambda: self.store.fail_step(claim, error, fail_run=True, release=reserved)), None
        except LLMError as exc:
            error = f"model call failed: {type(exc).__name__}: {exc}"
            return self._durable(lambda: self.store.fail_step(claim, error, release=reserved)), None
        response = sanitize.response(response)  # what the database cannot store never reaches it
        plan = plan_turn(response, names, last_step=last_step)
        usage = pricing.Usage(
            response.tokens_in, response.tokens_cached, response.tokens_out, response.tokens_reasoning
        )
        cost = self.prices.cost(ctx.agent.model, usage)
        max_repeats = self.settings.max_repeats
        refs = self._durable(
            lambda: self.store.commit_llm(claim, response, plan, max_repeats=max_repeats, cost=cost, reserved=reserved)
        )
        return refs, cost

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
