"""Shared CLI plumbing: the Typer app, settings, output (rich or --json), error translation."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from swarm.config import ENV_FILE_VAR, Settings
from swarm.exceptions import InputError, NotFound, StateError, SwarmError

if TYPE_CHECKING:
    from swarm.runs import Runs

app = typer.Typer(
    name="swarm",
    help="Durable LLM agent swarms: run, watch and resume them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
RUN_ID_ARG = typer.Argument(..., help="A run id, or any unique prefix of one (as `swarm ls` shows them).")
API_OPT = typer.Option(
    None,
    "--api",
    help="Talk to this swarm server instead of the local database (default: SWARM_API_URL; key from SWARM_API_KEY).",
)

#: True in a process started as the ``swarm`` command (:func:`swarm.cli.main`); False while a test
#: drives :data:`app` in its own process, whose environment must stay as it is.
PROCESS_ENTRY_POINT = False


@app.callback()
def _options(
    env_file: Path = typer.Option(
        None,
        "--env-file",
        exists=True,
        dir_okay=False,
        help=f"Read settings from this .env file (like {ENV_FILE_VAR}=PATH). No .env is read otherwise, "
        "not even one in the working directory.",
    ),
) -> None:
    """Durable LLM agent swarms: run, watch and resume them."""
    if env_file is not None:
        # An environment variable, not a parameter: `swarm worker`'s celery processes read it too.
        os.environ[ENV_FILE_VAR] = str(env_file.resolve())


def harden_process() -> None:
    """For the commands that run tool code or serve tenants, once they hold their settings: drop
    the secrets from this process's environment and make it not dumpable (:mod:`swarm.hardening`)."""
    if PROCESS_ENTRY_POINT:
        from swarm.hardening import harden

        harden()


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: say which variable is wrong
        fail(f"invalid configuration: {exc}")


def runs_service(s: Settings, api: str | None = None) -> Runs:
    """The Runs service a command works on: a server's (``--api`` or SWARM_API_URL), the cluster's
    (SWARM_BROKER_URL) or this process's (:func:`swarm.runs.open_runs`)."""
    from swarm.runs import open_runs

    return open_runs(s, api)


class ExitCode(IntEnum):
    """Every command's exit codes, the same locally and against a server (README's table)."""

    OK = 0
    ERROR = 1  #: configuration, a server that cannot be reached, anything else
    NOT_FOUND = 2  #: no such run (or key)
    INVALID = 3  #: invalid input, or a move the run's state does not allow
    RUN_NOT_SUCCEEDED = 4  #: the run (followed to its end) failed or was cancelled
    RUN_INTERRUPTED = 5  #: the followed run stopped unfinished: nothing works on it (`swarm resume`)
    USAGE = 64  #: the command line itself is wrong (unknown option, bad value): sysexits' EX_USAGE
    INTERRUPTED = 130  #: Ctrl-C


_ERROR_NAMES: dict[int, str] = {
    ExitCode.ERROR: "error",
    ExitCode.NOT_FOUND: "not_found",
    ExitCode.INVALID: "invalid",
    ExitCode.USAGE: "usage",
    ExitCode.RUN_INTERRUPTED: "run_interrupted",
    ExitCode.INTERRUPTED: "interrupted",
}

#: Set by :func:`errors` for a command run with --json: its errors are JSON on stdout too.
_json_errors: ContextVar[bool] = ContextVar("json_errors", default=False)


def report(message: str, code: int) -> None:
    """Say why the command ends with ``code``: one line on stderr, or with --json an object
    ``{"error": kind, "message": ..., "exit_code": code}`` on one line of stdout."""
    if _json_errors.get():
        # One line: it also ends `swarm watch --json`'s JSON Lines.
        error = {"error": _ERROR_NAMES.get(code, "error"), "message": message, "exit_code": int(code)}
        sys.stdout.write(json.dumps(error) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one greppable line


def fail(message: str, code: int = ExitCode.ERROR) -> NoReturn:
    """End the command with ``message`` (:func:`report`) and exit ``code``."""
    report(message, code)
    raise typer.Exit(int(code))


def run_outcome(state: str, status: str, hint: str | None, run_id: str) -> None:
    """End a command that followed a run to where it stopped: exit 0 if it succeeded, 4 if it
    failed or was cancelled, 5 with the hint if it is interrupted (``domain/liveness.py``)."""
    if state == "interrupted":
        what = hint or f"`swarm resume {run_id}` continues it"
        fail(f"run {run_id} is interrupted: {what}", ExitCode.RUN_INTERRUPTED)
    if status != "succeeded":
        raise typer.Exit(ExitCode.RUN_NOT_SUCCEEDED)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def errors(json_out: bool = False) -> Iterator[None]:
    """Turn swarm's exceptions into one clear message and an exit code; never a traceback. With
    ``json_out`` the message is JSON (see :func:`fail`)."""
    token = _json_errors.set(json_out)
    try:
        yield
    except NotFound as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    except (InputError, StateError) as exc:
        fail(str(exc), ExitCode.INVALID)
    except SwarmError as exc:
        fail(str(exc), ExitCode.ERROR)
    except Exception as exc:
        untranslated(exc)
        raise
    finally:
        _json_errors.reset(token)


def untranslated(exc: Exception) -> None:
    """Failures of what a command talks to that reach it as their library raised them (as the
    API's handlers in ``api/errors.py`` answer them with 503): the database cannot be reached,
    a migration revision does not exist. One line and exit 1 (3 for a bad revision), no traceback."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        first = str(exc.orig or exc).strip().splitlines()[0]
        fail(f"the database is unavailable (SWARM_DATABASE_URL): {first}", ExitCode.ERROR)
    if type(exc).__module__.startswith("alembic.") and type(exc).__name__ == "CommandError":
        fail(f"migrations: {exc}", ExitCode.INVALID)


#: click's UsageError as the installed typer raises it (typer carries its own copy of click): the
#: command line is wrong, exit 64 (``swarm.cli.main``), its message printed as it is.
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def within(name: str) -> Any:
    """A typer callback keeping an option's value within its bound (``domain/run_limits.py``, the
    table the API's request models use): a value out of it is a usage error with the bound's words."""
    from swarm.domain import run_limits

    bound = run_limits.BOUNDS[name]

    def check(value: Any) -> Any:
        try:
            return bound.check(value)
        except InputError as exc:
            raise UsageError(str(exc)) from None

    return check


def task_argument(value: str) -> str:
    """The task as given, checked as the API checks it (a usage error if it is not)."""
    from swarm.domain import run_limits

    try:
        return run_limits.check_task(value)
    except InputError as exc:
        raise UsageError(str(exc)) from None


#: The tools the simulated model's subagents call (``sim/script.py``: anything else would quietly be python).
SIM_TOOLS = ("python", "echo")


def sim_tool(value: str) -> str:
    """A typer callback for --tool of `swarm demo` / `swarm sim-llm`."""
    if value not in SIM_TOOLS:
        raise UsageError(f"--tool {value!r}: the simulated subagents call {' or '.join(SIM_TOOLS)}")
    return value


def setup_logging(verbose: bool = False) -> None:
    """The command's log on stderr, in SWARM_LOG_FORMAT (:mod:`swarm.logs`)."""
    from swarm import logs

    logs.configure(settings().log_format, logging.INFO if verbose else logging.WARNING)
