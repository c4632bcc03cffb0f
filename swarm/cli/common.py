"""Shared CLI plumbing: the Typer app, settings, output (rich or --json), error translation."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from swarm.config import Settings
from swarm.exceptions import InputError, NotFound, StateError, SwarmError

app = typer.Typer(name="swarm", help="Durable LLM agent swarms: run, watch and resume them.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: say which variable is wrong
        fail(f"invalid configuration: {exc}")


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def errors() -> Iterator[None]:
    """Turn swarm's exceptions into one clear line and an exit code; never a traceback."""
    try:
        yield
    except NotFound as exc:
        fail(str(exc), 2)
    except (InputError, StateError) as exc:
        fail(str(exc), 3)
    except SwarmError as exc:
        fail(str(exc), 1)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
