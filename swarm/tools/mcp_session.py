"""One MCP server's connection, owned by the hub's event loop (``swarm.tools.mcp_hub``).

The SDK's client is an async context manager whose transport (a stdio child process, an HTTP
client) lives in anyio task groups: it must be entered and left by the same task. So each server
gets a runner task that holds the ``Client`` open until it is told to stop or its transport dies;
calls from other tasks use it meanwhile. A stdio server's process is started with a clean
environment (the SDK's small allow-list — PATH, HOME, USER, ... — plus the config's ``env``) and,
with ``SWARM_MCP_ISOLATION=bwrap``, under bubblewrap: read-only system, private /tmp, swarm's home
hidden, no network unless the config sets ``"network": true``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

from swarm.domain.mcp import McpServer
from swarm.exceptions import ToolError
from swarm.tools.base import ToolImage, ToolResult

#: Image types a model accepts as image parts; others are described in text.
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_STDERR_TAIL = 2000


class McpUnavailable(ToolError):
    """The server could not be started or reached (the message says why)."""


@dataclass(frozen=True)
class McpToolSpec:
    """One tool a server lists."""

    name: str
    description: str
    input_schema: dict[str, Any]


def bwrap_argv(bwrap: str, server: McpServer, home: Path) -> list[str]:
    """The bubblewrap prefix a stdio server runs under: the whole file system read-only (servers
    live anywhere: node_modules, a venv, /opt), a private /tmp, SWARM_HOME (the SQLite database,
    the file cache) hidden, its own PID namespace (it dies with the worker) and no network unless
    the config asks for it — hence no route to swarm's database or broker."""
    argv = [bwrap, "--new-session", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not server.network:
        argv.append("--unshare-net")
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    hidden = ["/tmp"]
    if home.is_dir():
        argv += ["--tmpfs", str(home)]
        hidden.append(os.path.realpath(home))
    for d in bound_back(server.command or "", server.args, hidden):
        argv += ["--ro-bind", d, d]
    return [*argv, "--chdir", server.cwd or "/tmp", "--"]


def bound_back(command: str, args: Sequence[str], hidden: Sequence[str]) -> list[str]:
    """Where the server itself lives, when a hidden directory (/tmp, SWARM_HOME) covers it: its
    command's installation (``bin/..``: a virtual environment, ``node_modules``) and the paths
    among its arguments (a script), bound back read-only so a server installed under /tmp (a
    checkout, a CI workspace) still starts. Never a hidden directory itself or one holding it."""
    wanted = []
    path = shutil.which(command) or command
    if os.path.isabs(path) and os.path.exists(path):
        wanted.append(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    for arg in args:
        if os.path.isabs(arg) and os.path.exists(arg):
            wanted.append(os.path.abspath(arg) if os.path.isdir(arg) else os.path.dirname(os.path.abspath(arg)))
    out: list[str] = []
    for d in wanted:
        under = any(d.startswith(h + "/") for h in hidden)
        holds = any(h == d or h.startswith(d + "/") for h in hidden)
        if under and not holds and d not in out:
            out.append(d)
    return out


def stdio_params(server: McpServer, isolation: str, home: Path) -> Any:
    from mcp import StdioServerParameters

    command, args = server.command or "", list(server.args)
    if isolation == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise McpUnavailable(
                "bubblewrap (bwrap) is not installed, and SWARM_MCP_ISOLATION=bwrap runs MCP stdio servers under "
                "it (install bubblewrap, or set SWARM_MCP_ISOLATION=off)"
            )
        resolved = shutil.which(command) or command
        command, args = bwrap, [*bwrap_argv(bwrap, server, home)[1:], resolved, *args]
        return StdioServerParameters(command=command, args=args, env=dict(server.env))
    return StdioServerParameters(command=command, args=args, env=dict(server.env), cwd=server.cwd)


class Session:
    """A server's open client, restarted by :meth:`client` after it died or was stopped."""

    def __init__(self, server: McpServer, isolation: str, home: Path) -> None:
        self.server, self.isolation, self.home = server, isolation, home
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None
        self._errlog: TextIO | None = None
        self.starts = 0

    async def client(self) -> Any:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._client is not None and self._runner is not None and not self._runner.done():
                return self._client
            await self.stop()
            return await self._start()

    async def _start(self) -> Any:
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._runner = asyncio.create_task(self._run(ready, self._stop))
        self.starts += 1
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.server.start_timeout)
        except TimeoutError:
            note = self._stderr_note()
            await self.stop()
            why = f"did not answer within {self.server.start_timeout:g} s of starting{note}"
            raise McpUnavailable(f"MCP server {self.server.name!r} {why}") from None
        except McpUnavailable:
            raise
        except BaseException as exc:  # the SDK raises ExceptionGroups, OSError, McpError...
            note = self._stderr_note()
            await self.stop()
            raise McpUnavailable(
                f"MCP server {self.server.name!r} could not be started: {_describe(exc)}{note}"
            ) from None

    def _target(self) -> Any:
        s = self.server
        if s.command:
            self._errlog = cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))  # noqa: SIM115
            return stdio_params(s, self.isolation, self.home)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        return streamable_http_client(s.url or "", http_client=create_mcp_http_client(headers=dict(s.headers)))

    async def _run(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        from mcp import Client
        from mcp.client.caching import CacheConfig

        try:
            target = self._target()
            cache = CacheConfig(default_ttl_ms=int(self.server.tools_ttl * 1000))
            kwargs: dict[str, Any] = {"cache": cache, "read_timeout_seconds": self.server.timeout}
            if self.server.command:
                from mcp.client.stdio import stdio_client

                assert self._errlog is not None
                target = stdio_client(target, errlog=self._errlog)
            async with Client(target, **kwargs) as client:
                self._client = client
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else McpUnavailable(_describe(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    def _stderr_note(self) -> str:
        if self._errlog is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._errlog.seek(0)
            tail = self._errlog.read()[-_STDERR_TAIL:].strip()
            if tail:
                return f"; its stderr ended with: {tail}"
        return ""

    async def stop(self) -> None:
        runner, self._runner, self._client = self._runner, None, None
        if self._stop is not None:
            self._stop.set()
        if runner is not None and not runner.done():
            try:
                await asyncio.wait_for(runner, 10)
            except BaseException:
                runner.cancel()
        if self._errlog is not None:
            with contextlib.suppress(OSError):
                self._errlog.close()
            self._errlog = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def tool_result(result: Any, server: str, tool: str) -> ToolResult:
    """An MCP ``CallToolResult`` as swarm's tool result: text parts joined, images passed on as
    images, structured content as JSON when there is no text, ``is_error`` kept."""
    texts: list[str] = []
    images: list[ToolImage] = []
    for part in result.content or []:
        kind = getattr(part, "type", "")
        if kind == "text":
            texts.append(part.text)
        elif kind == "image" and part.mime_type in _IMAGE_TYPES:
            try:
                images.append(ToolImage(part.mime_type, base64.b64decode(part.data, validate=True)))
            except (binascii.Error, ValueError):
                texts.append(f"[an image of type {part.mime_type} that was not valid base64]")
        elif kind == "image":
            texts.append(f"[an image of type {part.mime_type}, which is not shown]")
        elif kind == "audio":
            texts.append(f"[audio of type {part.mime_type}, which is not shown]")
        elif kind == "resource":
            res = part.resource
            body = getattr(res, "text", None)
            texts.append(f"[resource {res.uri}]\n{body}" if body is not None else f"[binary resource {res.uri}]")
        elif kind == "resource_link":
            texts.append(f"[resource link {part.uri}: {part.name}]")
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    content = "\n".join(texts)
    if images:
        content += ("\n" if content else "") + f"[{len(images)} image(s) attached]"
    if not content:
        content = "(no output)"
    meta = {"mcp_server": server, "mcp_tool": tool}
    return ToolResult(content, is_error=bool(result.is_error), meta=meta, images=tuple(images))
