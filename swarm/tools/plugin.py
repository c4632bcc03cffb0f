"""Tool plugins: the one interface every tool has, built-in or installed, and how swarm finds them.

A tool is a class with a ``name``, a ``description`` (what the model reads), an ``arguments``
model (a :class:`swarm.tools.arguments.Arguments` pydantic model: the JSON schema the model is
shown, and the validation of what it sends back: a mistake goes back to the model as a tool
error), ``uses_workspace`` (True: the call runs in a directory holding the run's files, and what
it writes there is saved to the run) and a ``call(args, ctx) -> ToolResult`` that only ever sees
valid arguments::

    from pydantic import Field
    from swarm.tools.plugin import Arguments, ToolContext, ToolPlugin, ToolResult

    class WordCountArgs(Arguments):
        path: str = Field(description="A text file of the run's workspace.")

    class WordCount(ToolPlugin[WordCountArgs]):
        name = "word_count"
        description = "Count the lines, words and characters of a text file."
        arguments = WordCountArgs
        uses_workspace = True

        def call(self, args: WordCountArgs, ctx: ToolContext) -> ToolResult:
            text = (ctx.workspace / args.path).read_text()
            return ToolResult(f"{len(text.split())} words")

A package offers its tools under the entry-point group ``swarm.tools`` (``name = "module:Class"``
in its pyproject's ``[project.entry-points."swarm.tools"]``); swarm calls what an entry point
names with the process's settings (secrets blanked: :func:`plugin_settings`) and registers the
tool it returns. The built-in tools are entry points of swarm's own package too, and are also
registered directly, so they are there even in a checkout whose entry points are not installed.
``SWARM_TOOLS_ENABLED`` / ``SWARM_TOOLS_DISABLED`` choose which tools agents are given.

Third-party plugins run out of the worker process, one bubblewrapped process per call
(SWARM_PLUGIN_ISOLATION=bwrap, the default: :mod:`swarm.tools.plugin_sandbox`), or in it as trusted
code (``off``): see docs/tools.md.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from pydantic import SecretStr

from swarm.config import Settings
from swarm.constants import ORCHESTRATION_TOOLS
from swarm.exceptions import ConfigError
from swarm.tools import plugin_sandbox
from swarm.tools.arguments import Arguments, ArgumentsTool
from swarm.tools.base import Tool, ToolContext, ToolImage, ToolRegistry, ToolResult

__all__ = [
    "ENTRY_POINT_GROUP",
    "Arguments",
    "ToolContext",
    "ToolImage",
    "ToolPlugin",
    "ToolResult",
    "discover",
    "plugin_settings",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "swarm.tools"
#: What OpenAI-compatible APIs accept as a function name.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: The interface: subclass it with your :class:`Arguments` model (``ToolPlugin[MyArgs]``).
ToolPlugin = ArgumentsTool

#: Settings a plugin is not handed (blanked in its copy of the settings).
_SECRETS = ("llm_api_key", "api_key", "executor_token")
_SECRET_URLS = ("database_url", "broker_url")


def plugin_settings(settings: Settings) -> Settings:
    """``settings`` without swarm's secrets: no model key, API key or executor token, and no
    database or broker URL (a plugin has no business with swarm's own state)."""
    blank: dict[str, Any] = {name: SecretStr("") for name in _SECRETS}
    blank.update({name: "" for name in _SECRET_URLS})
    return settings.model_copy(update=blank)


def _builtins() -> dict[str, Callable[[Settings], Tool]]:
    from swarm.tools.echo import EchoTool
    from swarm.tools.python_exec import PythonTool
    from swarm.tools.web_fetch import WebFetchTool
    from swarm.tools.web_search import WebSearchTool

    return {"python": PythonTool, "web_fetch": WebFetchTool, "web_search": WebSearchTool, "echo": EchoTool}


def _names(raw: str) -> set[str]:
    return {n.strip() for n in raw.split(",") if n.strip()}


def _make(factory: Callable[..., Any], settings: Settings) -> Tool:
    """Call what an entry point names: with the settings if it takes an argument."""
    try:
        takes = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes = True
    tool = factory(settings) if takes else factory()
    for attr in ("name", "description", "parameters", "run"):
        if not hasattr(tool, attr):
            raise TypeError(f"{factory!r} made {tool!r}, which has no {attr!r}: not a swarm tool")
    if not isinstance(tool.name, str) or not NAME_RE.match(tool.name) or tool.name in ORCHESTRATION_TOOLS:
        raise TypeError(f"tool name {tool.name!r} is not allowed (letters, digits, _ and -, at most 64)")
    return tool  # type: ignore[no-any-return]


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))


def _load_all(
    eps: list[metadata.EntryPoint], builtins: dict[str, Callable[[Settings], Tool]], settings: Settings, safe: Settings
) -> list[Tool | str | None]:
    """Each entry point's tool, or why it failed, or None for a built-in's own entry point. Under
    SWARM_PLUGIN_ISOLATION=bwrap the plugins are imported in a sandbox, never here, and the tools
    are proxies that run each call there (swarm.tools.plugin_sandbox)."""
    if settings.plugin_isolation == "bwrap":
        safe_json = safe.model_dump(mode="json")
        found = plugin_sandbox.describe([(ep.name, ep.value) for ep in eps], settings, safe_json)
        out: list[Tool | str | None] = []
        for ep, d in zip(eps, found, strict=True):
            if "tool" in d:
                described = d["tool"]
                if not isinstance(described.get("name"), str) or not NAME_RE.match(described["name"]):
                    out.append(f"tool name {described.get('name')!r} is not allowed")
                    continue
                tool = plugin_sandbox.SandboxedPlugin(described, (ep.name, ep.value), settings, safe_json)
                if described.get("network") and not tool.network:
                    log.warning(
                        "tool plugin %s asks for the network; it runs without (list it in SWARM_PLUGIN_NETWORK)",
                        tool.name,
                    )
                out.append(tool)
            else:
                out.append(None if d.get("builtin") else str(d.get("error", "no answer")))
        return out
    loaded: list[Tool | str | None] = []
    for ep in eps:
        try:
            factory = ep.load()
            loaded.append(None if builtins.get(ep.name) is factory else _make(factory, safe))
        except Exception as exc:
            loaded.append(f"{type(exc).__name__}: {exc}")
    return loaded


def discover(settings: Settings) -> ToolRegistry:
    """The tools agents are given: the built-ins, then every ``swarm.tools`` entry point (a name
    already taken is skipped with a warning), filtered by SWARM_TOOLS_ENABLED / _DISABLED. A plugin
    that fails to load is skipped with a warning, unless it is named in SWARM_TOOLS_ENABLED
    (ConfigError then, as for a name no tool has): a worker must not start without a tool it was
    told to offer."""
    enabled, disabled = _names(settings.tools_enabled), _names(settings.tools_disabled)
    builtins = _builtins()
    tools: dict[str, Tool] = {}
    failed: dict[str, str] = {}
    for name, factory in builtins.items():
        if name not in disabled and (not enabled or name in enabled):
            tools[name] = _make(factory, settings)
    safe = plugin_settings(settings)
    plugins: set[str] = set()
    own = {f"{name}={f.__module__}:{f.__qualname__}" for name, f in builtins.items()}
    wanted = [
        ep
        for ep in _entry_points()
        if ep.name not in disabled and (not enabled or ep.name in enabled) and f"{ep.name}={ep.value}" not in own
    ]  # a built-in's own entry point is registered above (and needs no sandbox to say so)
    for ep, loaded in zip(wanted, _load_all(wanted, builtins, settings, safe), strict=True):
        if isinstance(loaded, str):  # a broken plugin must not stop the worker (unless it was asked for)
            failed[ep.name] = loaded
            log.warning("tool plugin %s (%s) not loaded: %s", ep.name, ep.value, loaded)
            continue
        if loaded is None:
            continue  # a built-in's own entry point: registered above
        if loaded.name in tools:
            log.warning("tool plugin %s (%s) skipped: a tool named %r exists already", ep.name, ep.value, loaded.name)
            continue
        tools[loaded.name] = loaded
        plugins.add(loaded.name)
    if missing := sorted(enabled - set(tools)):
        why = "; ".join(f"{n}: {failed[n]}" for n in missing if n in failed)
        raise ConfigError(
            f"SWARM_TOOLS_ENABLED names {', '.join(missing)}, which "
            + (f"failed to load ({why})" if why else "no built-in tool or installed plugin provides")
            + f"; tools found: {', '.join(sorted(tools)) or 'none'}"
        )
    registry = ToolRegistry(tools.values())
    registry.plugins = frozenset(plugins)
    return registry


def plugin_report(settings: Settings) -> dict[str, object]:
    """How third-party plugins run here, for ``swarm doctor``: not ok only when bubblewrap is asked
    for, cannot be had, and there are plugins to run under it."""
    names = sorted({ep.name for ep in _entry_points()} - set(_builtins()))
    found = f"plugins installed: {', '.join(names)}" if names else "no third-party plugins installed"
    if settings.plugin_isolation == "off":
        detail = f"tool plugins run in the worker process, as trusted code (SWARM_PLUGIN_ISOLATION=off); {found}"
        return {"ok": True, "mode": "off", "detail": detail}
    why = plugin_sandbox.probe_failure()
    if why is None:
        detail = f"tool plugins run under bubblewrap, one process per call (no secrets, no network); {found}"
        return {"ok": True, "mode": "bwrap", "detail": detail}
    return {
        "ok": not names,
        "mode": "bwrap",
        "detail": f"{why}: tool plugins cannot run (install bubblewrap, or set SWARM_PLUGIN_ISOLATION=off); {found}",
    }
