"""Every `swarm` command that prints a result takes --json (the style rule in the brief); the
exceptions are the long-running servers, and `export`, whose output is JSON Lines already."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import swarm.cli.admin
import swarm.cli.approvals
import swarm.cli.executor
import swarm.cli.files
import swarm.cli.retention
import swarm.cli.runs
import swarm.cli.server
import swarm.cli.worker  # noqa: F401  (each module registers its commands)
from swarm.cli.common import app

#: Commands that serve until stopped (they print a banner and logs, no result), and export.
NO_JSON = {"serve", "executor", "sim-llm", "export"}


def commands(typer_app: Any = app, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for info in typer_app.registered_commands:
        yield prefix + (info.name or info.callback.__name__.replace("_", "-")), info.callback
    for group in typer_app.registered_groups:
        yield from commands(group.typer_instance, f"{prefix}{group.name} ")


def test_every_command_that_prints_a_result_takes_json() -> None:
    found = dict(commands())
    assert {"ls", "show", "watch", "approvals", "keys create", "db upgrade", "worker", "prune"} <= set(found)
    missing = sorted(name for name, fn in found.items() if "json_out" not in inspect.signature(fn).parameters)
    assert missing == sorted(NO_JSON & set(found)), missing
