"""How the simulated swarm behaves: its parameters (:class:`SimParams`), the ``#sim key=value``
directives that set them per conversation, the HTTP faults it can inject, and the ``call=``
directive that makes it call one given tool."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

SIM_TOOLS = ("python", "echo")
#: ``files``: each subagent's python step k writes notes/<i>_<k>.txt and reads step k-1's file,
#: failing loudly if it is missing: proves workspace files follow a run across workers.
#: ``repeat``: each subagent makes one identical tool call at every step (python: it appends to
#: repeat_<i>.txt and prints how many runs the file holds), so the loop guard refuses the ones past
#: SWARM_MAX_REPEATS.
SCENARIOS = ("files", "repeat")
FAULTS = ("bad_json", "unknown_tool", "unknown_agent", "empty")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null", "off", "no"})


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class HttpFault:
    """An HTTP error the server returns instead of a completion.

    ``times`` None means every request; otherwise only the first ``times`` of a conversation.
    """

    status: int
    error_type: str
    times: int | None = None

    @property
    def retry_after(self) -> float | None:
        # Only a transient rate limit invites a retry; an empty quota does not heal by waiting.
        return 0.05 if self.error_type == "rate_limit_reached_error" else None


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_authentication_error",
    403: "permission_denied_error",
    404: "resource_not_found_error",
    429: "rate_limit_reached_error",
}
_HTTP_RE = re.compile(r"^(\d{3})(?:x(\d+))?$")


def parse_http_fault(spec: str | None) -> HttpFault | None:
    """``"429x2"``, ``"500x1"``, ``"401"``, ``"403"``, ``"quota"`` → :class:`HttpFault`.

    Anything unparseable is None: a typo in a directive must not take the server down.
    """
    if spec is None:
        return None
    spec = spec.strip().lower()
    if spec == "quota":
        return HttpFault(429, "exceeded_current_quota_error")
    m = _HTTP_RE.match(spec)
    if m is None:
        return None
    status = int(m.group(1))
    if not 400 <= status <= 599:
        return None
    times = int(m.group(2)) if m.group(2) is not None else None
    return HttpFault(status, _ERROR_TYPES.get(status, "server_error"), times)


@dataclass(frozen=True, kw_only=True)
class SimParams:
    """How the simulated swarm behaves. Server defaults, overridable per conversation by a
    ``#sim key=value ...`` directive in its first user message."""

    agents: int = 3
    tools: int = 2
    tool: str = "python"
    latency: float = 0.0
    tool_latency: float = 0.0
    fault: str | None = None
    http: str | None = None
    thinking: bool = True
    scenario: str | None = None
    #: ``call=<tool> args=<base64url JSON>``: the orchestrator makes exactly this one tool call, then
    #: answers with its result (any tool: a probe for the sandbox, an MCP or plugin tool).
    call: str | None = None
    args: str | None = None
    #: ``subcall=<tool> args=<base64url JSON>``: the orchestrator runs its usual swarm, and each
    #: subagent's tool calls are this call (an MCP tool offered to subagents, say).
    subcall: str | None = None
    #: ``fanout=1``: the orchestrator launches its ``agents`` tasks with one assign_tasks call
    #: (SWARM_TOOL_ASSIGN_TASKS) instead of one assign_task call each.
    fanout: bool = False

    @property
    def http_fault(self) -> HttpFault | None:
        return parse_http_fault(self.http)

    def merged(self, directive: Mapping[str, str]) -> SimParams:
        """These params with the directive's valid values applied; invalid values are ignored."""
        changes: dict[str, Any] = {}
        for key, raw in directive.items():
            value = _convert(key, raw)
            if value is not _INVALID:
                changes[key] = value
        return replace(self, **changes)

    def subagent_directive(self) -> str:
        """The directive the orchestrator writes into each task so the worker inherits its knobs."""
        text = f"#sim tools={self.tools} tool={self.tool} tool_latency={self.tool_latency:g} latency={self.latency:g}"
        if self.scenario:
            text += f" scenario={self.scenario}"
        if self.subcall:
            text += f" subcall={self.subcall} args={self.args or ''}"
        return text if self.thinking else text + " thinking=false"


_INVALID = object()
_TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def encode_args(args: Mapping[str, Any]) -> str:
    """A tool call's arguments as a directive value (base64url of the JSON, no padding)."""
    raw = json.dumps(dict(args), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_args(value: str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, TypeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def call_directive(tool: str, args: Mapping[str, Any]) -> str:
    """``#sim call=… args=…``: the orchestrator calls ``tool`` with ``args`` once, then reports the result."""
    return f"#sim call={tool} args={encode_args(args)}"


def subcall_directive(tool: str, args: Mapping[str, Any], agents: int = 2) -> str:
    """``#sim subcall=… args=…``: ``agents`` subagents each call ``tool`` with ``args`` once."""
    return f"#sim agents={agents} tools=1 subcall={tool} args={encode_args(args)}"


def _float(raw: str) -> object:
    try:
        value = float(raw)
    except ValueError:
        return _INVALID
    return value if math.isfinite(value) and value >= 0 else _INVALID


def _int(raw: str, minimum: int) -> object:
    try:
        value = int(raw)
    except ValueError:
        return _INVALID
    return value if value >= minimum else _INVALID


def _convert(key: str, raw: str) -> object:
    low = raw.strip().lower()
    if key == "agents":
        # Zero workers would make an assistant turn with an empty tool_calls list: not a swarm.
        return _int(low, 1)
    if key == "tools":
        return _int(low, 0)
    if key == "tool":
        return low if low in SIM_TOOLS else _INVALID
    if key in ("latency", "tool_latency"):
        return _float(low)
    if key == "fault":
        if low in _NONE:
            return None
        return low if low in FAULTS else _INVALID
    if key == "http":
        if low in _NONE:
            return None
        return low if parse_http_fault(low) is not None else _INVALID
    if key == "scenario":
        if low in _NONE:
            return None
        return low if low in SCENARIOS else _INVALID
    if key in ("call", "subcall"):
        return raw.strip() if _TOOL_NAME_RE.match(raw.strip()) else _INVALID
    if key == "args":
        return raw.strip() if decode_args(raw.strip()) is not None else _INVALID
    if key == "fanout":
        if low in _TRUE:
            return True
        return False if low in _FALSE else _INVALID
    if key == "thinking":
        if low in _TRUE:
            return True
        return False if low in _FALSE else _INVALID
    return _INVALID


_ALIASES = {"n": "agents", "k": "tools", "toollatency": "tool_latency"}
_DIRECTIVE_RE = re.compile(r"#sim\b([^\n]*)", re.IGNORECASE)
_PAIR_RE = re.compile(r"([A-Za-z][\w-]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)")


def parse_directive(text: str) -> dict[str, str]:
    """Every ``key=value`` on ``#sim`` lines of ``text``; later lines win.

    Keys are lower-cased with ``-`` read as ``_`` (so ``tool-latency`` works); values keep their
    text with surrounding quotes removed. Unknown keys are kept here and ignored by
    :meth:`SimParams.merged`.
    """
    found: dict[str, str] = {}
    for line in _DIRECTIVE_RE.finditer(text):
        for key, value in _PAIR_RE.findall(line.group(1)):
            name = key.lower().replace("-", "_")
            found[_ALIASES.get(name, name)] = value.strip("\"'")
    return found
