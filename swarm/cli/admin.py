"""Operator commands: database migrations and the simulated model server."""

from __future__ import annotations

import typer

from swarm.cli.common import JSON_OPT, app, console, emit_json, errors, settings, sim_tool

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), json_out: bool = JSON_OPT) -> None:
    """Apply migrations up to REVISION (default: head). Safe to run concurrently on PostgreSQL."""
    from swarm.store.db import make_engine
    from swarm.store.migrate import current_revision, upgrade

    with errors(json_out):
        engine = make_engine(settings().db_url)
        upgrade(engine, revision)
        rev = current_revision(engine)
    if json_out:
        emit_json({"revision": rev})
    else:
        console.print(f"database at revision [bold]{rev}[/]")


@db_app.command("current")
def db_current(json_out: bool = JSON_OPT) -> None:
    """Show the schema revision of the configured database."""
    from swarm.store.db import make_engine
    from swarm.store.migrate import current_revision, head_revision

    with errors(json_out):
        engine = make_engine(settings().db_url)
        cur, head = current_revision(engine), head_revision(engine)
    if json_out:
        emit_json({"revision": cur, "head": head, "up_to_date": cur == head})
    else:
        console.print(f"revision {cur} (head {head})" + ("" if cur == head else " — run `swarm db upgrade`"))


@app.command("sim-llm")
def sim_llm(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port to listen on."),
    agents: int = typer.Option(3, help="Subagents the orchestrator launches (N)."),
    tools: int = typer.Option(2, help="Tool calls each subagent makes (K)."),
    tool: str = typer.Option("python", callback=sim_tool, help="Tool the subagents call: python or echo."),
    latency: float = typer.Option(0.0, help="Seconds per model response."),
    tool_latency: float = typer.Option(0.0, help="Seconds each python tool call sleeps."),
    max_concurrency: int | None = typer.Option(
        None, min=1, help="Requests in flight the sim serves; beyond: 429 with Retry-After, like a provider."
    ),
    rpm: int | None = typer.Option(None, min=1, help="Requests per minute the sim serves; beyond: 429."),
    tpm: int | None = typer.Option(None, min=1, help="Prompt tokens per minute the sim serves; beyond: 429."),
) -> None:
    """Serve the simulated model: an OpenAI-compatible endpoint that plays a Kimi-style swarm.

    Point swarm at it with SWARM_LLM_BASE_URL=http://HOST:PORT/v1. A `#sim agents=N tools=K
    latency=S` line in a task overrides these defaults for that run. `POST /sim/limits` changes
    the limits while it runs; `/sim/stats` reports the 429s sent and the peak in flight.
    """
    from swarm.sim import SimConfig, SimParams, serve
    from swarm.sim.capacity import SimLimits

    console.print(f"simulated model on http://{host}:{port}/v1 (stats: /sim/stats)")
    params = SimParams(agents=agents, tools=tools, tool=tool, latency=latency, tool_latency=tool_latency)
    limits = SimLimits(max_concurrency=max_concurrency, rpm=rpm, tpm=tpm)
    serve(SimConfig(params=params, host=host, port=port, limits=limits))


@app.command()
def doctor(json_out: bool = JSON_OPT) -> None:
    """Check what this machine gives swarm: the database, the broker, the model endpoint and how model
    code is isolated. Exit 1 if something needed is missing, with what to do about it."""
    from swarm.tools.executor import python_report

    with errors(json_out):
        s = settings()
    checks: dict[str, dict[str, object]] = {}
    try:
        from swarm.store.db import make_engine
        from swarm.store.migrate import current_revision, head_revision

        engine = make_engine(s.db_url)
        cur, head = current_revision(engine), head_revision(engine)
        engine.dispose()
        if cur is None and not s.database_url:
            checks["database"] = {"ok": True, "detail": f"embedded SQLite at {s.db_url}, created on the first run"}
        else:
            checks["database"] = {
                "ok": cur == head,
                "detail": f"revision {cur} (head {head})" + ("" if cur == head else "; run `swarm db upgrade`"),
            }
    except Exception as exc:
        checks["database"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    checks["broker"] = {
        "ok": True,
        "detail": "cluster (Celery over SWARM_BROKER_URL)" if s.distributed else "embedded (in-process workers)",
    }
    checks["model"] = {"ok": True, "detail": s.llm_base_url or "the built-in simulated model"}
    isolation = python_report(s)
    checks["python_isolation"] = {
        "ok": bool(isolation["available"]),
        "mode": isolation["python_isolation"],
        "detail": isolation["detail"],
    }
    from swarm.tools.plugin import plugin_report

    checks["plugin_isolation"] = plugin_report(s)
    ok = all(bool(c["ok"]) for c in checks.values())
    if json_out:
        emit_json({"ok": ok, "checks": checks})
    else:
        for name, c in checks.items():
            mark = "[green]ok[/]  " if c["ok"] else "[red]FAIL[/]"
            console.print(f"{mark} {name}: {c['detail']}", soft_wrap=True)
    if not ok:
        raise typer.Exit(1)
