"""This process's MCP servers, behind a synchronous face for swarm's step threads.

The SDK is async and swarm's steps run in threads, so one event-loop thread per process owns every
MCP session (:class:`~swarm.tools.mcp_session.Session`); a step submits a coroutine to it with
``run_coroutine_threadsafe`` and waits at most the server's ``timeout``. Servers start lazily, on
the first listing or call that needs them; one that died is started again by the next call (a call
that finds its server gone is sent once more to the new one); tool lists are cached by the SDK for
the server's TTL (``ttlMs``) or the config's ``tools_ttl``. A forked child (Celery's prefork pool)
starts its own loop and servers: nothing of its parent's is used. :meth:`McpHub.close` stops them
all (at process exit and on Celery's worker_process_shutdown).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from swarm.config import Settings
from swarm.domain import mcp
from swarm.domain.mcp import McpServer
from swarm.exceptions import ConfigError, InputError
from swarm.tools.base import ToolResult, tool_schema
from swarm.tools.mcp_session import McpToolSpec, McpUnavailable, Session, tool_result

log = logging.getLogger(__name__)
T = TypeVar("T")

_PAGES = 20
#: A server that could not start is not tried again for this long (its error is repeated meanwhile).
_RETRY_START_AFTER = 15.0
_CLOSED_WORDS = ("closed", "broken pipe", "connection", "eof", "end of stream")


def deployment_servers(settings: Settings) -> tuple[McpServer, ...]:
    """SWARM_MCP_CONFIG's servers, references expanded; ConfigError naming what is wrong."""
    if not settings.mcp_config:
        return ()
    source = f"SWARM_MCP_CONFIG={settings.mcp_config}"
    with open(os.path.expanduser(settings.mcp_config), encoding="utf-8") as f:
        servers = mcp.parse(f.read(), source)
    variables = settings.mcp_variables(per_run=False)
    return tuple(mcp.resolved(s, variables, source) for s in servers)


def run_servers(settings: Settings, config: str | None) -> tuple[McpServer, ...]:
    """The servers a run sees: the deployment's and its own (stored, unexpanded) config."""
    own: tuple[McpServer, ...] = ()
    if config:
        source = "the run's MCP config"
        variables = settings.mcp_variables(per_run=True)
        isolation = settings.mcp_isolation
        own = tuple(_resolved_or_broken(s, variables, source, isolation) for s in mcp.parse(config, source))
    return mcp.merge(deployment_servers(settings), own)


def _resolved_or_broken(server: McpServer, variables: dict[str, str], source: str, isolation: str) -> McpServer:
    """A reference this worker cannot expand makes the server's calls tool errors saying so; so does a
    run's stdio server on a worker that would start it unisolated (it is a command the run chose)."""
    if server.command and isolation != "bwrap":
        why = "a run's own stdio servers are only started under bubblewrap, and this worker has SWARM_MCP_ISOLATION=off"
        return dataclasses.replace(server, error=why)
    if server.network:  # refused at submission; a config stored before that rule, say
        return dataclasses.replace(server, network=False)
    try:
        return mcp.resolved(server, variables, source)
    except ConfigError as exc:
        return dataclasses.replace(server, error=str(exc))


class McpHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[str, Session] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self.deployment = deployment_servers(settings)  # a bad file stops the worker at start
        atexit.register(self.close)

    # ---------------------------------------------------------------- the loop thread

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._sessions = {}  # a parent's sessions (and processes) are not ours
                self._loop, self._pid = asyncio.new_event_loop(), os.getpid()
                loop = self._loop
                threading.Thread(target=loop.run_forever, name="swarm-mcp", daemon=True).start()
            return self._loop

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def _session(self, server: McpServer) -> Session:
        key = server.key()
        self._running_loop()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = Session(server, self.settings.mcp_isolation, self.settings.home)
                self._sessions[key] = session
            return session

    # ---------------------------------------------------------------- what steps use

    def servers(self, run_config: str | None) -> tuple[McpServer, ...]:
        """The servers a run sees: the deployment's, and its own config's (stored with it)."""
        if not run_config:
            return self.deployment
        try:
            return run_servers(self.settings, run_config)
        except ConfigError as exc:  # checked at submit; a config stored by another version, say
            log.warning("a run's MCP config is unusable here: %s", exc)
            return self.deployment

    def tools(self, server: McpServer) -> list[McpToolSpec]:
        """The tools ``server`` lists (starting it if need be); McpUnavailable if it cannot."""
        if server.error is not None:
            raise McpUnavailable(f"MCP server {server.name!r} cannot be used: {server.error}")
        failed = self._failed.get(server.key())
        if failed is not None and time.monotonic() - failed[0] < _RETRY_START_AFTER:
            raise McpUnavailable(failed[1])
        session = self._session(server)

        async def listing() -> list[McpToolSpec]:
            try:
                return await list_all(await session.client())
            except Exception as exc:
                if not _connection_lost(exc):
                    raise
                await session.stop()  # it died since: started again, and asked again
                return await list_all(await session.client())

        async def list_all(client: Any) -> list[McpToolSpec]:
            found: list[McpToolSpec] = []
            cursor: str | None = None
            for _ in range(_PAGES):
                page = await client.list_tools(cursor=cursor)
                found += [McpToolSpec(t.name, t.description or "", dict(t.input_schema)) for t in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    break
            return found

        try:
            listed = self._submit(listing(), 2 * (server.start_timeout + server.timeout) + 5)
        except Exception as exc:
            if isinstance(exc, McpUnavailable):
                error = str(exc)
            elif isinstance(exc, TimeoutError):
                error = f"MCP server {server.name!r} did not list its tools within {server.timeout:g} s"
            else:
                error = f"MCP server {server.name!r} could not list its tools: {_text(exc)}"
            # Not started again for a while: every model turn of every run would wait for it.
            self._failed[server.key()] = (time.monotonic(), error)
            raise McpUnavailable(error) from None
        self._failed.pop(server.key(), None)
        return listed

    def schemas(self, servers: tuple[McpServer, ...], is_orchestrator: bool) -> tuple[list[dict[str, Any]], set[str]]:
        """The OpenAI tool entries of the servers offered to this kind of agent, and the names of
        those that could not be listed now (their calls are still let through, to be told why)."""
        schemas: list[dict[str, Any]] = []
        down: set[str] = set()
        for server in servers:
            if not server.offered_to(is_orchestrator):
                continue
            try:
                listed = self.tools(server)
            except McpUnavailable as exc:
                log.warning("%s", exc)
                down.add(mcp.server_part(server.name))
                continue
            for t in listed:
                description = t.description or f"The {t.name} tool of the {server.name} MCP server."
                schemas.append(tool_schema(mcp.tool_name(server.name, t.name), description, _object(t.input_schema)))
        return schemas, down

    def call(self, servers: tuple[McpServer, ...], name: str, args: dict[str, Any]) -> ToolResult:
        """Run the ``mcp__<server>__<tool>`` call ``name``; every failure is a tool error."""
        server = next((s for s in servers if mcp.server_of(name) == mcp.server_part(s.name)), None)
        if server is None:
            return ToolResult(f"No MCP server of this run provides {name!r}.", is_error=True)
        try:
            tool = next((t.name for t in self.tools(server) if mcp.tool_name(server.name, t.name) == name), None)
        except McpUnavailable as exc:
            return ToolResult(str(exc), is_error=True)
        if tool is None:
            return ToolResult(f"The MCP server {server.name!r} has no tool called {name!r} (any more).", is_error=True)
        session = self._session(server)
        wait = server.start_timeout + server.timeout + 5
        for attempt in (1, 2):
            try:
                result = self._submit(_call(session, tool, args, server.timeout), wait)
                return tool_result(result, server.name, tool)
            except TimeoutError:
                return ToolResult(
                    f"The {name} call timed out: the MCP server {server.name!r} did not answer within "
                    f"{server.timeout:g} s. Do not repeat it as it is; try another approach.",
                    is_error=True,
                )
            except McpUnavailable as exc:
                return ToolResult(str(exc), is_error=True)
            except Exception as exc:
                gone = _connection_lost(exc)
                if gone:  # the server died: restart it; the call is tried once more on the new one
                    self._submit(session.stop(), 15)
                    if attempt == 1:
                        continue
                return ToolResult(f"The {name} call failed: {_text(exc)}", is_error=True)
        raise AssertionError("unreachable")

    def check(self) -> list[dict[str, Any]]:
        """What ``swarm worker --check`` says: each deployment server started and its tool count, or why not."""
        report = []
        for server in self.deployment:
            try:
                report.append({"server": server.name, "ok": True, "tools": len(self.tools(server))})
            except McpUnavailable as exc:
                report.append({"server": server.name, "ok": False, "error": str(exc)})
        return report

    def close(self) -> None:
        """Stop every server this process started (its stdio children are reaped)."""
        with self._lock:
            loop, sessions, mine = self._loop, list(self._sessions.values()), self._pid == os.getpid()
            self._sessions, self._loop = {}, None
        if loop is None or not mine:
            return

        async def stop_all() -> None:
            await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(20)
        except Exception:  # shutting down anyway
            log.debug("stopping MCP servers failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)


async def _call(session: Session, tool: str, args: dict[str, Any], timeout: float) -> Any:
    client = await session.client()
    return await asyncio.wait_for(client.call_tool(tool, args, read_timeout_seconds=timeout), timeout)


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    return schema if schema.get("type") == "object" else {"type": "object", "properties": {}}


def _text(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_text(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _connection_lost(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, BaseExceptionGroup):
        return any(_connection_lost(e) for e in exc.exceptions)
    if isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
        return True
    return any(w in str(exc).lower() for w in _CLOSED_WORDS)


def check_config(text: str, source: str, allowed: set[str]) -> str:
    """A run's MCP config, checked and made canonical (what is stored with the run); InputError
    saying what is wrong: bad JSON or keys, a literal secret, a ``${NAME}`` the deployment does not allow."""
    try:
        servers = mcp.parse(text, source)
        mcp.check_run_secrets(servers, source)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if not servers:
        raise InputError(f"{source}: names no MCP server")
    networked = [s.name for s in servers if s.network]
    if networked:
        raise InputError(
            f'{source}: server {networked[0]!r} asks for "network": true, which only the deployment\'s own '
            "servers (SWARM_MCP_CONFIG) may have; a run's stdio servers run without network"
        )
    unknown = sorted(mcp.references(servers) - allowed)
    if unknown:
        names = ", ".join("${" + n + "}" for n in unknown)
        raise InputError(
            f"{source}: {names} may not be used by a run's MCP config; the deployment lists the variables "
            f"runs may reference in SWARM_MCP_RUN_VARS (now: {', '.join(sorted(allowed)) or 'none'})"
        )
    return mcp.dump(servers)
