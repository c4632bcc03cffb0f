"""The ``swarm`` command. Each sub-module registers its commands on :data:`app`."""

from __future__ import annotations

from swarm.cli import common
from swarm.cli.common import app


def main() -> None:
    from swarm.cli import admin, executor, runs  # noqa: F401  (registers commands)

    common.PROCESS_ENTRY_POINT = True

    for optional in ("swarm.cli.worker", "swarm.cli.server"):
        try:
            __import__(optional)
        except ModuleNotFoundError as exc:
            if exc.name != optional:
                raise
    app()


__all__ = ["app", "main"]
