"""The process a sandboxed tool plugin runs in (started by :mod:`swarm.tools.plugin_sandbox`).

It gets one request as JSON on stdin (already parsed by the boot line, which also set ``sys.path``
to the worker's): either ``describe`` (load the listed entry points and say what tools they make)
or ``call`` (load one, make its tool with the secret-free settings, run it on the arguments) and
writes one JSON answer on what was stdout. The plugin's own prints go to stderr, so nothing it
writes can pass for an answer. Limits are set before any plugin code is imported.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from swarm.config import Settings
from swarm.tools.base import ToolContext, ToolResult


def _limits(memory_mb: int) -> None:
    # Hard limits too: the plugin cannot raise them back.
    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _load(name: str, value: str) -> Any:
    # The entry point as the worker listed it: loading it directly spares scanning every installed
    # distribution's metadata (a fifth of a second per call).
    return metadata.EntryPoint(name=name, value=value, group="swarm.tools").load()


def _describe(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    from swarm.tools.plugin import _builtins, _make

    builtins = _builtins()
    found: list[dict[str, Any]] = []
    for name, value in request["entry_points"]:
        try:
            factory = _load(name, value)
            if builtins.get(name) is factory:
                found.append({"builtin": True})
                continue
            tool = _make(factory, settings)
            described = {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "uses_workspace": bool(getattr(tool, "uses_workspace", False)),
                "network": bool(getattr(tool, "network", False)),
            }
            ok = isinstance(tool.parameters, dict) and isinstance(tool.description, str)
            json.dumps(described)
            found.append({"tool": described} if ok else {"error": f"{factory!r}: description or parameters not JSON"})
        except Exception as exc:  # one broken plugin must not hide the others
            found.append({"error": f"{type(exc).__name__}: {exc}"})
    return {"entry_points": found}


def _call(request: dict[str, Any], settings: Settings) -> dict[str, Any]:
    from swarm.tools.plugin import _make

    tool = _make(_load(*request["entry_point"]), settings)
    c = request["context"]
    ids = {k: str(c[k]) for k in ("run_id", "agent_id", "step_id")}
    ctx = ToolContext(**ids, workspace=Path(c["workspace"]), settings=settings)
    result = tool.run(request["args"], ctx)
    if not isinstance(result, ToolResult):
        raise TypeError(f"the tool returned {type(result).__name__}, not a ToolResult")
    return {
        "content": str(result.content),
        "is_error": bool(result.is_error),
        "meta": result.meta,
        "images": [{"mime": i.mime, "data": base64.b64encode(i.data).decode()} for i in result.images],
    }


def main(request: dict[str, Any]) -> None:
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the plugin's prints go to stderr
    sys.stdout = sys.stderr
    try:
        _limits(int(request["memory_mb"]))
        settings = Settings.model_validate(request["settings"])
        answer = _describe(request, settings) if request["mode"] == "describe" else _call(request, settings)
        text = json.dumps(answer)
    except Exception as exc:  # the plugin's failure is the model's tool error, with what it said
        traceback.print_exc()
        text = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    with os.fdopen(answer_fd, "w") as out:
        out.write(text)
