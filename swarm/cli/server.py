"""Server-side commands: serve, keys; and the live ones: watch, export (locally or via a server)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from swarm.cli.common import (
    API_OPT,
    JSON_OPT,
    RUN_ID_ARG,
    ExitCode,
    app,
    console,
    emit_json,
    err_console,
    errors,
    harden_process,
    run_outcome,
    runs_service,
    settings,
    setup_logging,
)
from swarm.domain.events import EventType

if TYPE_CHECKING:
    from swarm.cli.live import LiveRun
    from swarm.runs import Runs

keys_app = typer.Typer(help="API keys of the REST server (stored hashed; a key is shown once).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the REST API and the web dashboard (http://HOST:PORT/dashboard/).

    With SWARM_BROKER_URL set, runs go to Celery workers; otherwise this process runs them.
    """
    import logging

    from swarm.api.server import serve as run_server

    setup_logging(log_level.lower() in ("debug", "info"))
    # One line per model call or migration step drowns the request log; keep their warnings.
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with errors():
        s = settings()
        harden_process()  # tenants' runs execute in this process without a broker
        if s.log_format == "json":  # a JSON log holds nothing but JSON lines
            logging.getLogger("swarm.api").info("swarm API on http://%s:%d", host, port)
        else:
            err_console.print(f"swarm API on http://{host}:{port}  (dashboard: /dashboard/, docs: /docs)")
        run_server(s, host, port, log_level.lower())


# ------------------------------------------------------------------- keys


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option("default", help="The tenant whose runs this key sees and creates."),
    name: str = typer.Option(None, help="A label, e.g. who or what uses the key."),
    admin: bool = typer.Option(False, "--admin", help="See every tenant's runs (operators)."),
    expires_in: str = typer.Option(None, "--expires-in", help="Lifetime, e.g. 90d or 12h (default: until revoked)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Create an API key and print it. It is shown only this once: only its hash is stored."""
    from swarm.domain.durations import parse_age
    from swarm.runtime import open_store

    with errors(json_out):
        lifetime = None if expires_in is None else parse_age(expires_in)
        info, key = open_store(settings()).create_key(tenant, name, admin=admin, expires_in=lifetime)
    if json_out:
        emit_json({**info.as_dict(), "key": key})
        return
    # Only the key on stdout, so `KEY=$(swarm keys create)` works; the advice goes to stderr.
    err_console.print(
        f"API key for tenant [bold]{info.tenant}[/] (prefix {info.prefix}"
        f"{', admin' if admin else ''}). Store it now: it will not be shown again."
    )
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def keys_list(tenant: str = typer.Option(None, help="Only this tenant's keys."), json_out: bool = JSON_OPT) -> None:
    """List API keys (prefixes only; the keys themselves are not stored)."""
    from swarm.runtime import open_store

    with errors(json_out):
        keys = open_store(settings()).list_keys(tenant=tenant)
    if json_out:
        emit_json([k.as_dict() for k in keys])
        return
    t = Table("prefix", "tenant", "name", "admin", "created", "expires", "last used", "revoked")
    for k in keys:
        t.add_row(
            k.prefix,
            k.tenant,
            k.name or "",
            "yes" if k.admin else "",
            _when(k.created_at),
            _when(k.expires_at) + (" (expired)" if k.expired() else ""),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(
    ref: str = typer.Argument(..., help="The key's prefix (from `swarm keys list`) or id."), json_out: bool = JSON_OPT
) -> None:
    """Revoke an API key: requests with it are refused (403) from now on."""
    from swarm.runtime import open_store

    with errors(json_out):
        info = open_store(settings()).revoke_key(ref)
    if json_out:
        emit_json(info.as_dict())
    else:
        console.print(f"key {info.prefix} (tenant {info.tenant}) revoked")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


# ------------------------------------------------------------------ watch


@app.command()
def watch(
    run_id: str = RUN_ID_ARG,
    json_out: bool = typer.Option(False, "--json", help="Print events as JSON lines."),
    api: str = API_OPT,
) -> None:
    """Follow a run live: agent tree, progress against limits, tokens, critical steps.

    Driven by the run's event stream (SSE from a server, or the events table locally). Exits when
    the run has ended: 0 if it succeeded, 4 if it failed or was cancelled; 5 with what to do if it
    is interrupted (the process running it died, or no worker is alive); 130 on Ctrl-C.
    """
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            run_id = runs.resolve(run_id)
            _watch_json(runs, run_id) if json_out else _watch_live(runs, run_id)
            s = runs.summary(run_id)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        finally:
            runs.close()
        run_outcome(s.state or s.status, s.status, s.hint, run_id)


def _watch_json(runs: Runs, run_id: str) -> None:
    for event in runs.events(run_id):
        sys.stdout.write(json.dumps(event, default=str) + "\n")
        sys.stdout.flush()


def _watch_live(runs: Runs, run_id: str) -> None:
    from swarm.cli.live import LiveRun

    live = LiveRun(runs.summary(run_id))
    live.merge_tree(runs.agents(run_id))
    _refresh_provider(live, runs)
    from rich.live import Live

    with Live(console=console, get_renderable=live.render, refresh_per_second=4):
        for event in runs.events(run_id, after=live.last_event_id):
            live.apply(event)
            if live.needs_tree:
                live.merge_tree(runs.agents(run_id))
            if event["type"] in (EventType.RUN_DONE, EventType.RUN_RESUMED):
                live.sync(runs.summary(run_id))
            if time.monotonic() - live.provider_at > 1.0:
                _refresh_provider(live, runs)
        live.sync(runs.summary(run_id))
        live.merge_tree(runs.agents(run_id))


def _refresh_provider(live: LiveRun, runs: Runs) -> None:
    live.provider, live.provider_at = _provider_line(runs), time.monotonic()


def _provider_line(runs: Runs) -> str:
    """The provider's capacity for the watch view: 'host/model#key  limit 50/50 · 12 in flight …'."""
    try:
        views = runs.provider()
    except Exception:  # an older server without /v1/provider: the view goes on without it
        return ""
    return "; ".join(
        f"{v['provider']}  limit {v['limit']:g}/{v['max_concurrency'] or '-'} · {v['in_flight']} in flight · "
        f"{v['waiting']} waiting · {v['throttled']} × 429 of {v['calls']}"
        + (f" · held {v['hold_seconds']:g} s" if v["hold_seconds"] else "")
        for v in views
    )


# ----------------------------------------------------------------- export

OUTPUT_OPT = typer.Option(None, "-o", "--output", dir_okay=False, help="Write to this file (default: stdout).")


@app.command()
def export(run_id: str = RUN_ID_ARG, output: Path = OUTPUT_OPT, api: str = API_OPT) -> None:
    """Export a run's trajectory as JSON Lines: a run header, one record per agent (messages and
    steps with timings and tokens), then per-stage critical-step annotations."""
    with errors():
        runs = runs_service(settings(), api)
        lines = iter(runs.export(runs.resolve(run_id)))
        first = next(lines)  # an unknown run fails here, before an empty file is created
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        n = 1
        try:
            out.write(first)
            for line in lines:
                out.write(line)
                n += 1
        finally:
            if output:
                out.close()
            runs.close()
    if output:
        err_console.print(f"wrote {n} records to {output}")
