"""The ``swarm`` command. Each sub-module registers its commands on :data:`app`."""

from __future__ import annotations

import sys

import typer

from swarm.cli import common
from swarm.cli.common import ExitCode, app


def _click_error(name: str) -> type[Exception]:
    """One of click's exception classes as the installed typer raises them (typer 0.29 carries its
    own copy of click, so ``click.UsageError`` would not catch them)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def main() -> None:
    from swarm.cli import admin, approvals, executor, files, retention, runs  # noqa: F401  (registers commands)

    common.PROCESS_ENTRY_POINT = True

    for optional in ("swarm.cli.worker", "swarm.cli.server"):
        try:
            __import__(optional)
        except ModuleNotFoundError as exc:
            if exc.name != optional:
                raise
    # Not standalone: click would exit 2 on a usage error, the code that means "not found" here.
    try:
        code = app(standalone_mode=False)
    except _click_error("UsageError") as exc:
        if "--json" in sys.argv[1:]:
            message = exc.format_message()  # type: ignore[attr-defined]
            common.emit_json({"error": "usage", "message": message, "exit_code": int(ExitCode.USAGE)})
        else:
            exc.show()  # type: ignore[attr-defined]
        sys.exit(ExitCode.USAGE)
    except _click_error("ClickException") as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


__all__ = ["app", "main"]
