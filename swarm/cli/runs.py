"""Run commands: run, demo, ls, show, resume, cancel.

Each is one code path over the Runs service (:mod:`swarm.runs`): the local database, the cluster
or — with SWARM_API_URL or ``--api`` — a swarm server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

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
    fail,
    harden_process,
    report,
    run_outcome,
    runs_service,
    settings,
    setup_logging,
    sim_tool,
    task_argument,
    within,
)
from swarm.cli.render import RunProgress, agent_tree, summary_table
from swarm.config import Settings
from swarm.domain.liveness import RunState
from swarm.runs import RunRequest, Runs
from swarm.store.types import RunSummary

W1_TASK = (
    "Research task W1: split the work across {agents} parallel subagents, each making {tools} "
    "tool calls, then summarise. #sim agents={agents} tools={tools} tool={tool} latency={latency}"
)


MAX_USD_OPT = typer.Option(
    None, "--max-usd", help="USD cap of the run's model calls (default SWARM_MAX_USD).", callback=within("max_usd")
)
MAX_TOKENS_OPT = typer.Option(
    None,
    "--max-tokens",
    help="Cap of the run's model tokens, in + out (default SWARM_MAX_TOKENS).",
    callback=within("max_tokens"),
)


def budget_options(max_usd: float | None, max_tokens: int | None) -> dict[str, Any]:
    """--max-usd / --max-tokens as given (their options checked them: ``domain/run_limits.py``)."""
    return {k: v for k, v in (("max_usd", max_usd), ("max_tokens", max_tokens)) if v is not None}


def follow(runs: Runs, run_id: str, json_out: bool) -> RunSummary:
    """Show live progress until the run ends (or just wait, with --json)."""
    if json_out:
        return runs.wait(run_id)
    bars = RunProgress()
    from rich.live import Live

    with Live(bars.renderable(), console=err_console, refresh_per_second=4, transient=True):
        return runs.wait(run_id, bars.update)


def execute(
    s: Settings,
    api: str | None,
    *,
    request: RunRequest | None = None,
    resume_id: str | None = None,
    fork: tuple[str, str, str | None] | None = None,
    json_out: bool,
    detach: bool,
    caps: dict[str, Any] | None = None,
) -> RunSummary | str:
    """Submit ``request`` (or resume ``resume_id``, or ``fork`` = (run, step, message)) and follow
    the run until it ends."""
    runs = runs_service(s, api)
    try:
        if detach and runs.mode == "embedded":
            fail(
                "--detach needs a cluster: set SWARM_BROKER_URL (and run `swarm worker`) so the run "
                "continues without this process"
            )
        if request is not None:
            run_id = runs.submit(request)
        elif fork is not None:
            run_id = runs.fork(runs.resolve(fork[0]), fork[1], message=fork[2])
        else:
            assert resume_id
            run_id = runs.resolve(resume_id)
            runs.resume(run_id, **(caps or {}))
        if detach:
            return run_id
        if not json_out:
            verb = "submitted to" if request is not None else "forked on" if fork else "resumed on"
            hint = f"  (resume it with `swarm resume {run_id}` if interrupted)" if runs.mode == "embedded" else ""
            err_console.print(f"run [bold]{run_id}[/] {verb} {runs.where}{hint}", soft_wrap=True)
            gated = runs.summary(run_id).approve_tools
            if gated:
                err_console.print(
                    f"calls of {', '.join(gated)} wait for your decision: `swarm approvals {run_id[:12]}`, "
                    "then `swarm approve STEP_ID` or `swarm reject STEP_ID --reason TEXT`",
                    soft_wrap=True,
                )
        try:
            return follow(runs, run_id, json_out)
        except KeyboardInterrupt:
            interrupted(runs, run_id)
    finally:
        runs.close()


def interrupted(runs: Runs, run_id: str) -> NoReturn:
    """Ctrl-C while following a run. A run this process executes stops at once, as if the process
    were killed: what was committed is kept and `swarm resume` goes on from there (steps in flight
    run again; their model calls were never committed). Waiting for them to commit would take as
    long as their calls and, with the model client closing under them, fail their agents. A run
    on the cluster or a server just goes on without this watcher."""
    if runs.mode == "embedded":
        message = f"interrupted: run {run_id} stopped; continue it with `swarm resume {run_id}`"
    else:
        message = (
            f"stopped following run {run_id}; it goes on on {runs.where} "
            f"(`swarm watch {run_id}` to follow, `swarm cancel {run_id}` to stop it)"
        )
    report(message, ExitCode.INTERRUPTED)
    if runs.mode == "embedded":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ExitCode.INTERRUPTED)
    raise typer.Exit(ExitCode.INTERRUPTED)


def _print_summary(s: RunSummary, json_out: bool) -> None:
    if json_out:
        emit_json(s.as_dict())
    else:
        console.print(summary_table(s))


def _finish(out: RunSummary | str, json_out: bool) -> None:
    """Print the outcome; exit 4 if the run did not succeed."""
    if isinstance(out, str):
        emit_json({"id": out, "status": "running"}) if json_out else console.print(out)
        return
    _print_summary(out, json_out)
    if out.state == "interrupted" and json_out:
        # One JSON document on stdout: the summary says it all (its state and hint).
        raise typer.Exit(ExitCode.RUN_INTERRUPTED)
    run_outcome(out.state or out.status, out.status, out.hint, out.id)


@app.command()
def run(
    task: str = typer.Argument(..., help="What the swarm should do.", callback=task_argument),
    model: str = typer.Option(None, help="Model name (default: SWARM_MODEL)."),
    max_subagents: int = typer.Option(
        None, help="Max subagents for this run (default 100).", callback=within("max_subagents")
    ),
    max_tool_calls: int = typer.Option(
        None, help="Max tool calls for this run (default 1500).", callback=within("max_tool_calls")
    ),
    max_steps: int = typer.Option(
        None, help="Max steps per agent (default 100).", callback=within("max_steps_per_agent")
    ),
    max_depth: int = typer.Option(
        None,
        help="How deep subagents may nest (default 1: only the orchestrator spawns).",
        callback=within("max_depth"),
    ),
    max_wall: float = typer.Option(
        None, "--max-wall", help="Max wall-clock seconds for the run.", callback=within("max_wall_seconds")
    ),
    max_spawns_per_turn: int = typer.Option(
        None,
        help="Loop guard: subagents one turn may launch; further assign_task calls of that turn get a tool error "
        "(default: no cap beyond --max-subagents).",
        callback=within("max_spawns_per_turn"),
    ),
    max_usd: float = MAX_USD_OPT,
    max_tokens: int = MAX_TOKENS_OPT,
    attach: list[Path] = typer.Option(
        [],
        "--attach",
        exists=True,
        dir_okay=False,
        help="Attach a file (images go to the model as images). Repeatable.",
    ),
    approve: str = typer.Option(
        None,
        "--approve",
        help="Tools whose calls wait for your decision before they run (`swarm approvals`, `swarm approve`): "
        "names or patterns, comma-separated, e.g. 'python,mcp__github__*'. Adds to SWARM_APPROVE_TOOLS.",
    ),
    mcp: Path = typer.Option(
        None,
        "--mcp",
        exists=True,
        dir_okay=False,
        help="MCP servers for this run (Claude-Desktop mcpServers JSON; see docs/mcp.md): their tools are offered "
        "to the agents as mcp__<server>__<tool>. Secrets only as ${NAME} references (SWARM_MCP_RUN_VARS).",
    ),
    provider: str = typer.Option(
        None,
        "--provider",
        help="A named provider of SWARM_PROVIDERS for this run's model calls (default: the SWARM_LLM_* one).",
    ),
    provider_concurrency: int = typer.Option(
        None, min=1, help="This run's own cap on model calls in flight (only lower than the provider's)."
    ),
    provider_rpm: int = typer.Option(None, min=1, help="This run's own model requests per minute (only lower)."),
    provider_tpm: int = typer.Option(None, min=1, help="This run's own model tokens per minute (only lower)."),
    detach: bool = typer.Option(False, "--detach", help="Submit and return the run id (cluster or server mode)."),
    json_out: bool = JSON_OPT,
    verbose: bool = typer.Option(False, "-v", "--verbose"),
    api: str = API_OPT,
) -> None:
    """Run a task with a swarm and print its summary."""
    from swarm.domain import approvals
    from swarm.runtime import load_attachment

    setup_logging(verbose)
    with errors(json_out):
        s = settings()
        harden_process()  # settings are read once: from here on they live only in `s`
        request = RunRequest(
            task=task,
            model=model,
            max_subagents=max_subagents,
            max_tool_calls=max_tool_calls,
            max_steps_per_agent=max_steps,
            max_depth=max_depth,
            max_wall_seconds=max_wall,
            max_spawns_per_turn=max_spawns_per_turn,
            attachments=tuple(load_attachment(p) for p in attach),
            approve_tools=approvals.parse_patterns(approve),
            **budget_options(max_usd, max_tokens),
            mcp=None if mcp is None else mcp.read_text(encoding="utf-8"),
            provider=provider,
            provider_concurrency=provider_concurrency,
            provider_rpm=provider_rpm,
            provider_tpm=provider_tpm,
        )
        out = execute(s, api, request=request, json_out=json_out, detach=detach)
    _finish(out, json_out)


@app.command()
def demo(
    agents: int = typer.Option(100, min=0, help="Subagents (W1: 100)."),
    tools: int = typer.Option(15, min=0, help="Tool calls per subagent (W1: 15)."),
    latency: float = typer.Option(0.0, min=0.0, help="Simulated model latency in seconds."),
    tool: str = typer.Option("python", callback=sim_tool, help="python (real subprocesses) or echo (no-op)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run the standard workload W1 on the built-in simulated model: no services, no API key."""
    setup_logging()
    with errors(json_out):
        s = settings()
        s = s.model_copy(update={"api_url": ""})  # the demo runs here or on the cluster, never on a server
        if not s.distributed:
            s = s.model_copy(update={"llm_base_url": ""})
            s = _demo_isolation(s, tool, json_out)
        harden_process()
        task = W1_TASK.format(agents=agents, tools=tools, tool=tool, latency=latency)
        request = RunRequest(
            task=task,
            max_subagents=max(agents, s.max_subagents),
            max_tool_calls=max(agents * tools, s.max_tool_calls),
        )
        out = execute(s, None, request=request, json_out=json_out, detach=False)
    _finish(out, json_out)


def _demo_isolation(s: Settings, tool: str, json_out: bool) -> Settings:
    """The embedded demo's model is swarm's own simulator, whose python calls are known and benign:
    where bubblewrap is missing it runs them without isolation rather than failing, and says so."""
    from swarm.tools.sandbox_spec import probe

    if tool != "python" or s.python_isolation == "off" or (why := probe(s.python_network)) is None:
        return s
    if not json_out:
        err_console.print(
            f"[yellow]note:[/] the python sandbox is unavailable ({why.split(';')[0]}); the demo's "
            "simulated model runs its own known code without it. Real runs refuse python calls "
            "until it is installed."
        )
    return s.model_copy(update={"python_isolation": "off"})


@app.command()
def resume(
    run_id: str = RUN_ID_ARG,
    detach: bool = typer.Option(False, "--detach"),
    max_usd: float = MAX_USD_OPT,
    max_tokens: int = MAX_TOKENS_OPT,
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """Continue an interrupted, failed or cancelled run; committed steps are reused, not repeated.
    --max-usd / --max-tokens replace its spend caps (to continue a run its budget stopped)."""
    setup_logging()
    with errors(json_out):
        caps = budget_options(max_usd, max_tokens)
        s = settings()
        harden_process()
        out = execute(s, api, resume_id=run_id, json_out=json_out, detach=detach, caps=caps)
    _finish(out, json_out)


@app.command("fork")
def fork_run(
    run_id: str = RUN_ID_ARG,
    at: str = typer.Option(..., "--at", help="The step to go on from (a step id or a unique prefix; `swarm export`)."),
    message: str = typer.Option(None, "--message", help="What the step's agent reads instead of its last message."),
    detach: bool = typer.Option(False, "--detach"),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """Start a new run with RUN_ID's committed history up to step --at, and follow it. The step runs
    again in the new run (an LLM step with --message as its agent's last message); no model call
    committed before it is sent again. The origin is not changed."""
    setup_logging()
    with errors(json_out):
        s = settings()
        harden_process()
        out = execute(s, api, fork=(run_id, at, message), json_out=json_out, detach=detach)
    _finish(out, json_out)


@app.command()
def cancel(run_id: str = RUN_ID_ARG, json_out: bool = JSON_OPT, api: str = API_OPT) -> None:
    """Cancel a run: no new model or tool call of it starts anywhere after this returns."""
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            run_id = runs.resolve(run_id)
            out = runs.cancel(run_id)
        finally:
            runs.close()
    if json_out:
        emit_json({"id": run_id, "status": out.status, "changed": out.changed})
    else:
        console.print(f"run {run_id}: {out.status}" + ("" if out.changed else " (was not running)"))


@app.command("ls")
def list_runs(
    status: RunState = typer.Option(
        None, help="Only runs in this state (running: something works on them; interrupted: nothing does)."
    ),
    limit: int = typer.Option(20, min=1, max=1000),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """List recent runs."""
    from rich.table import Table

    from swarm.cli.render import styled, usd_text

    with errors(json_out):
        service = runs_service(settings(), api)
        try:
            runs = service.list_runs(status=status.value if status else None, limit=limit)
        finally:
            service.close()
    if json_out:
        emit_json([r.as_dict() for r in runs])
        return
    # Ids whole at any width (they are what the other commands take); the task gives way.
    t = Table(box=None, header_style="bold")
    t.add_column("id", no_wrap=True, min_width=32)
    t.add_column("status", no_wrap=True, min_width=11)
    for name in ("subs", "tools", "crit", "wall s", "cost"):
        t.add_column(name, no_wrap=True, justify="right")
    # What is left of the terminal after the other columns (~86 characters).
    t.add_column("task", overflow="ellipsis", no_wrap=True, max_width=max(6, console.width - 88))
    for r in runs:
        t.add_row(
            r.id,
            styled(r.state or r.status),
            str(r.subagents),
            str(r.tool_calls),
            str(r.critical_steps),
            f"{r.wall_seconds:.1f}",
            usd_text(r.cost_usd),
            r.task[:50],
        )
    console.print(t)


@app.command()
def show(run_id: str = RUN_ID_ARG, json_out: bool = JSON_OPT, api: str = API_OPT) -> None:
    """Show a run's summary and its agent tree."""
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            run_id = runs.resolve(run_id)
            s, agents = runs.summary(run_id), runs.agents(run_id)
        finally:
            runs.close()
    if json_out:
        emit_json({**s.as_dict(), "agents": agents})
        return
    console.print(summary_table(s))
    console.print(agent_tree(agents))
