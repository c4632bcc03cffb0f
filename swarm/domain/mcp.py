"""MCP server configuration (the Claude-Desktop-style ``mcpServers`` JSON) and tool naming: pure.

A config is ``{"mcpServers": {"<name>": {...}}}``; each server is either stdio (``command``,
``args``, ``env``) or streamable HTTP (``url``, ``headers``), plus swarm's keys ``timeout`` (seconds
per call, default 60), ``agents`` (``orchestrator`` | ``subagents`` | ``both``, default ``both``) and,
for stdio, ``network`` (default false: the server runs with no network at all). Anything else is
refused with a message naming the key, so a typo never silently drops a setting.

Values of ``env`` and ``headers`` may hold ``${NAME}`` references, expanded on the worker
(:func:`expand`). A per-run config (``swarm run --mcp``, the REST field) is stored with its run, so
it must not carry secrets: a secret-looking ``env`` name or credential header must be a reference
(:func:`check_run_secrets`), and per-run references resolve only from the variables the deployment
allows (``SWARM_MCP_RUN_VARS``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from swarm.exceptions import ConfigError
from swarm.provider_profiles import VAR_REF

Agents = Literal["orchestrator", "subagents", "both"]

#: Every MCP tool swarm offers is named ``mcp__<server>__<tool>``.
PREFIX = "mcp__"
#: OpenAI-style function names: ``^[a-zA-Z0-9_-]{1,64}$``.
MAX_NAME = 64
DEFAULT_TIMEOUT = 60.0
MIN_START_TIMEOUT = 30.0
#: How long a tool list without the server's own TTL (``ttlMs``) is reused.
DEFAULT_TOOLS_TTL = 60.0

_STDIO_KEYS = {"command", "args", "env", "cwd", "network"}
_HTTP_KEYS = {"url", "headers"}
_COMMON_KEYS = {"timeout", "agents", "type", "tools_ttl", "disabled"}
_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
_SECRET_PARTS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "ACCESS_KEY", "PRIVATE_KEY", "AUTH")


@dataclass(frozen=True, kw_only=True)
class McpServer:
    """One configured server. ``command`` set: stdio; ``url`` set: streamable HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    network: bool = False
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    tools_ttl: float = DEFAULT_TOOLS_TTL
    agents: Agents = "both"
    #: Why this server cannot be used here (a ``${NAME}`` this worker cannot expand); None: usable.
    error: str | None = None

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    @property
    def start_timeout(self) -> float:
        """How long starting it may take: cold starts (npx, a venv) easily pass a short call deadline."""
        return max(self.timeout, MIN_START_TIMEOUT)

    def offered_to(self, is_orchestrator: bool) -> bool:
        return self.agents == "both" or (self.agents == "orchestrator") == is_orchestrator

    def key(self) -> str:
        """Identity of this server's process/connection: the same config shares one session."""
        return json.dumps(
            [self.name, self.command, self.args, dict(self.env), self.cwd, self.network, self.url, dict(self.headers)],
            sort_keys=True,
        )


def _fail(source: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: {what}")


def _strings(value: Any, source: str, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _fail(source, f"{what} must be an object of string values")
    return dict(value)


def _server(name: str, raw: Any, source: str) -> McpServer:
    where = f"{source}: server {name!r}"
    if not 1 <= len(name) <= 32:
        raise ConfigError(f"{where}: a server name has 1 to 32 characters")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = sorted(set(raw) - _STDIO_KEYS - _HTTP_KEYS - _COMMON_KEYS)
    if unknown:
        known = ", ".join(sorted(_STDIO_KEYS | _HTTP_KEYS | _COMMON_KEYS))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    has_cmd, has_url = "command" in raw, "url" in raw
    if has_cmd == has_url:
        raise ConfigError(
            f"{where}: give either 'command' (a stdio server) or 'url' (a streamable HTTP server)"
            + (", not both" if has_cmd else "")
        )
    stdio_only = sorted(set(raw) & (_STDIO_KEYS - {"command"})) if has_url else []
    http_only = sorted(set(raw) & (_HTTP_KEYS - {"url"})) if has_cmd else []
    if stdio_only or http_only:
        raise ConfigError(f"{where}: {', '.join(stdio_only + http_only)} does not apply to this kind of server")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    ttl = raw.get("tools_ttl", DEFAULT_TOOLS_TTL)
    for key, value in (("timeout", timeout), ("tools_ttl", ttl)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
            raise ConfigError(f"{where}: {key} must be a number of seconds in (0, 3600]")
    agents = raw.get("agents", "both")
    if agents not in ("orchestrator", "subagents", "both"):
        raise ConfigError(f"{where}: agents must be 'orchestrator', 'subagents' or 'both'")
    common: dict[str, Any] = {"name": name, "timeout": float(timeout), "tools_ttl": float(ttl), "agents": agents}
    if has_url:
        url = raw["url"]
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise ConfigError(f"{where}: url must be an http:// or https:// URL")
        return McpServer(url=url, headers=_strings(raw.get("headers", {}), where, "headers"), **common)
    command, args = raw["command"], raw.get("args", [])
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"{where}: command must be a non-empty string")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}: args must be a list of strings")
    cwd, network = raw.get("cwd"), raw.get("network", False)
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError(f"{where}: cwd must be a string")
    if not isinstance(network, bool):
        raise ConfigError(f"{where}: network must be true or false")
    env = _strings(raw.get("env", {}), where, "env")
    return McpServer(command=command, args=tuple(args), env=env, cwd=cwd, network=network, **common)


def parse(data: Any, source: str) -> tuple[McpServer, ...]:
    """The servers of one config (JSON text or the decoded object); ConfigError saying what is wrong."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise _fail(source, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"mcpServers"} or not isinstance(data.get("mcpServers"), dict):
        raise _fail(source, 'expected {"mcpServers": {"<name>": {...}}} and nothing else')
    servers = [_server(n, raw, source) for n, raw in data["mcpServers"].items() if not _disabled(raw)]
    names = [server_part(s.name) for s in servers]
    if len(set(names)) != len(names):
        raise _fail(source, "two servers' names are the same once made fit for tool names ([A-Za-z0-9_-])")
    return tuple(servers)


def _disabled(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("disabled") is True


def merge(deployment: tuple[McpServer, ...], run: tuple[McpServer, ...]) -> tuple[McpServer, ...]:
    """The servers a run sees: the deployment's, with a per-run server of the same name replacing it."""
    by_name = {s.name: s for s in deployment}
    by_name.update({s.name: s for s in run})
    return tuple(by_name.values())


def _looks_secret(name: str) -> bool:
    upper = name.upper().replace("-", "_")
    return any(part in upper for part in _SECRET_PARTS)


def check_run_secrets(servers: tuple[McpServer, ...], source: str) -> None:
    """A per-run config is stored with its run: refuse literal secrets in it (use ``${NAME}``)."""
    for s in servers:
        pairs = [("env", k, v, _looks_secret(k)) for k, v in s.env.items()]
        pairs += [("headers", k, v, k.lower() in _CREDENTIAL_HEADERS or _looks_secret(k)) for k, v in s.headers.items()]
        for where, key, value, secret in pairs:
            if secret and not VAR_REF.fullmatch(value.strip()) and not _only_refs(value):
                raise ConfigError(
                    f"{source}: server {s.name!r} {where} {key!r} looks like a secret and is given literally; a "
                    "run's MCP config is stored with the run, so write a reference such as "
                    "'${MY_TOKEN}' (or 'Bearer ${MY_TOKEN}') to a variable the deployment lists in SWARM_MCP_RUN_VARS"
                )


def _only_refs(value: str) -> bool:
    """True if every character that could be secret sits in a ``${NAME}`` (e.g. ``Bearer ${TOKEN}``)."""
    rest = VAR_REF.sub("", value)
    return bool(VAR_REF.search(value)) and rest.strip() in ("", "Bearer", "Basic", "token", "Token")


def references(servers: tuple[McpServer, ...]) -> set[str]:
    return {m for s in servers for v in (*s.env.values(), *s.headers.values()) for m in VAR_REF.findall(v)}


def expand(value: str, variables: Mapping[str, str], source: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in variables:
            raise ConfigError(f"{source}: ${{{m.group(1)}}} is not available here (unset, or not allowed)")
        return variables[m.group(1)]

    return VAR_REF.sub(one, value)


def resolved(server: McpServer, variables: Mapping[str, str], source: str) -> McpServer:
    """``server`` with its ``${NAME}`` references replaced by ``variables``' values."""
    from dataclasses import replace

    env = {k: expand(v, variables, source) for k, v in server.env.items()}
    headers = {k: expand(v, variables, source) for k, v in server.headers.items()}
    return replace(server, env=env, headers=headers)


def _clean(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", part)


def server_part(server: str) -> str:
    """A server's name as it appears in its tools' names: no ``__`` inside (it separates the tool)."""
    return re.sub(r"_+", "_", _clean(server)).strip("_") or "server"


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>``, sanitised to ``[A-Za-z0-9_-]`` and cut to 64 characters; a cut name
    ends in a short hash of the full one, so two long tool names stay distinct."""
    import hashlib

    name = f"{PREFIX}{server_part(server)}__{_clean(tool)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def server_of(name: str) -> str | None:
    """The (sanitised) server part of an ``mcp__<server>__<tool>`` name, or None."""
    if not name.startswith(PREFIX):
        return None
    server, sep, _ = name[len(PREFIX) :].partition("__")
    return server if sep and server else None


def dump(servers: tuple[McpServer, ...]) -> str:
    """A config's canonical JSON (what a run stores): references stay unexpanded."""
    out: dict[str, Any] = {}
    for s in servers:
        d: dict[str, Any] = {"timeout": s.timeout, "tools_ttl": s.tools_ttl, "agents": s.agents}
        if s.command:
            d |= {"command": s.command, "args": list(s.args), "env": dict(s.env), "network": s.network}
            if s.cwd:
                d["cwd"] = s.cwd
        else:
            d |= {"url": s.url, "headers": dict(s.headers)}
        out[s.name] = d
    return json.dumps({"mcpServers": out}, sort_keys=True)
