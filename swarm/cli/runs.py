"""Run commands: run, demo, ls, show, resume, cancel.

Each works on the local database, or — with SWARM_API_URL or ``--api`` — against a swarm server.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.live import Live

from swarm.cli.common import (
    JSON_OPT,
    app,
    console,
    emit_json,
    err_console,
    errors,
    fail,
    harden_process,
    settings,
    setup_logging,
)
from swarm.cli.render import RunProgress, agent_tree, summary_table
from swarm.cli.server import API_OPT
from swarm.config import Settings
from swarm.domain.status import RUN_TERMINAL
from swarm.store.store import StateStore
from swarm.store.types import RunSummary

if TYPE_CHECKING:
    from swarm.api.client import ApiClient

W1_TASK = ("Research task W1: split the work across {agents} parallel subagents, each making {tools} "
           "tool calls, then summarise. #sim agents={agents} tools={tools} tool={tool} latency={latency}")


@contextmanager
def model_endpoint(s: Settings, quiet: bool) -> Iterator[Settings]:
    """Use the configured endpoint, or start the built-in simulated model in this process."""
    if s.llm_base_url:
        yield s
        return
    from swarm.sim import SimConfig, SimServer

    with SimServer(SimConfig(port=0)) as sim:
        if not quiet:
            err_console.print(f"[dim]no SWARM_LLM_BASE_URL set: using the built-in simulated model at {sim.url}[/]")
        yield s.model_copy(update={"llm_base_url": sim.url})


def _follow(store: StateStore, run_id: str, json_out: bool, wait_fn: object = None) -> RunSummary:
    """Show live progress until the run ends (or just wait, with --json)."""
    if json_out:
        while (s := store.run_summary(run_id)).status not in RUN_TERMINAL:
            time.sleep(0.25)
        return s
    bars = RunProgress()
    with Live(bars.renderable(), console=err_console, refresh_per_second=4, transient=True):
        while True:
            s = store.run_summary(run_id)
            bars.update(s, store.agent_counts(run_id))
            if s.status in RUN_TERMINAL:
                return s
            time.sleep(0.25)


def _print_summary(s: RunSummary, json_out: bool) -> None:
    if json_out:
        emit_json(s.as_dict())
    else:
        console.print(summary_table(s))


def _exit_code(s: RunSummary) -> None:
    if s.status != "succeeded":
        raise typer.Exit(4)


def _client(api: str | None, s: Settings | None = None) -> ApiClient | None:
    """A client for the configured server, or None to work on the local database."""
    from swarm.api.client import ApiClient

    return ApiClient.from_settings(s or settings(), api)


def _remote_follow(client: ApiClient, run_id: str, json_out: bool) -> RunSummary:
    """Like :func:`_follow`, driven by the server's event stream."""
    if json_out:
        return client.wait(run_id)
    bars = RunProgress()
    with Live(bars.renderable(), console=err_console, refresh_per_second=4, transient=True):
        def show(s: RunSummary) -> None:
            bars.update(s, dict(Counter(a["status"] for a in client.agents(run_id))))
        return client.wait(run_id, show, min_interval=0.5)


def _remote_execute(client: ApiClient, submit: str | None, resume_id: str | None, *, json_out: bool,
                    detach: bool, spec_kwargs: dict[str, object] | None = None) -> RunSummary | str:
    """Submit (or resume) a run on a server and follow it."""
    from swarm.runtime import load_attachment

    if submit is not None:
        kw = dict(spec_kwargs or {})
        paths = kw.pop("attachments", None)
        attachments = [load_attachment(p) for p in paths] if isinstance(paths, list) else []
        model = kw.pop("model", None)
        run_id = client.submit(submit, model=model if isinstance(model, str) else None,
                               limits={("max_steps_per_agent" if k == "max_steps" else k): v for k, v in kw.items()},
                               attachments=attachments)
    else:
        assert resume_id
        run_id = resume_id
        client.resume(run_id)
    if detach:
        return run_id
    if not json_out:
        err_console.print(f"run [bold]{run_id}[/] {'submitted to' if submit else 'resumed on'} {client.base_url}")
    return _remote_follow(client, run_id, json_out)


def execute(s: Settings, submit: str | None, resume_id: str | None, json_out: bool, detach: bool,
            spec_kwargs: dict[str, object] | None = None) -> RunSummary | str:
    """Submit (or resume) a run and follow it, embedded or on the cluster."""
    from swarm.runtime import LocalRuntime, open_store, run_spec

    if s.distributed:
        from swarm.dispatch.celery import CeleryDispatcher

        store = open_store(s)
        dispatcher = CeleryDispatcher.from_settings(s)
        if submit is not None:
            run_id, refs = store.create_run(run_spec(s, submit, **spec_kwargs or {}))  # type: ignore[arg-type]
        else:
            assert resume_id
            run_id, refs = resume_id, store.resume_run(resume_id)
        dispatcher.dispatch(refs)
        if detach:
            return run_id
        if not json_out:
            err_console.print(f"run [bold]{run_id}[/] {'submitted to' if submit else 'resumed on'} the cluster")
        return _follow(store, run_id, json_out)
    if detach:
        fail("--detach needs a cluster: set SWARM_BROKER_URL (and run `swarm worker`) so the run "
             "continues without this process")
    with model_endpoint(s, json_out) as s2, LocalRuntime(s2) as rt:
        if submit is not None:
            run_id = rt.submit(run_spec(s2, submit, **spec_kwargs or {}))  # type: ignore[arg-type]
        else:
            assert resume_id
            run_id = resume_id
            rt.resume(run_id)
        if not json_out:
            err_console.print(f"run [bold]{run_id}[/] started (resume it with `swarm resume {run_id}` if interrupted)")
        return _follow(rt.store, run_id, json_out)


@app.command()
def run(
    task: str = typer.Argument(..., help="What the swarm should do."),
    model: str = typer.Option(None, help="Model name (default: SWARM_MODEL)."),
    max_subagents: int = typer.Option(None, help="Max subagents for this run (default 100)."),
    max_tool_calls: int = typer.Option(None, help="Max tool calls for this run (default 1500)."),
    max_steps: int = typer.Option(None, help="Max steps per agent (default 100)."),
    max_depth: int = typer.Option(None, help="How deep subagents may nest (default 1: only the orchestrator spawns)."),
    max_wall: float = typer.Option(None, "--max-wall", help="Max wall-clock seconds for the run."),
    attach: list[Path] = typer.Option([], "--attach", exists=True, dir_okay=False,
                                      help="Attach a file (images go to the model as images). Repeatable."),
    detach: bool = typer.Option(False, "--detach", help="Submit and return the run id (cluster or server mode)."),
    json_out: bool = JSON_OPT,
    verbose: bool = typer.Option(False, "-v", "--verbose"),
    api: str = API_OPT,
) -> None:
    """Run a task with a swarm and print its summary."""
    setup_logging(verbose)
    spec_kwargs: dict[str, object] = dict(
        model=model, max_subagents=max_subagents, max_tool_calls=max_tool_calls, max_steps=max_steps,
        max_depth=max_depth, max_wall_seconds=max_wall, attachments=attach)
    with errors():
        s = settings()
        client = _client(api, s)
        harden_process()  # settings are read once: from here on they live only in `s`
        if client is not None:
            out = _remote_execute(client, task, None, json_out=json_out, detach=detach,
                                  spec_kwargs=spec_kwargs)
        else:
            out = execute(s, task, None, json_out, detach, spec_kwargs)
    if isinstance(out, str):
        emit_json({"id": out, "status": "running"}) if json_out else console.print(out)
        return
    _print_summary(out, json_out)
    _exit_code(out)


@app.command()
def demo(
    agents: int = typer.Option(100, help="Subagents (W1: 100)."),
    tools: int = typer.Option(15, help="Tool calls per subagent (W1: 15)."),
    latency: float = typer.Option(0.0, help="Simulated model latency in seconds."),
    tool: str = typer.Option("python", help="python (real subprocesses) or echo (no-op)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run the standard workload W1 on the built-in simulated model: no services, no API key."""
    setup_logging()
    s = settings()
    if not s.distributed:
        s = s.model_copy(update={"llm_base_url": ""})
        s = _demo_isolation(s, tool, json_out)
    harden_process()
    task = W1_TASK.format(agents=agents, tools=tools, tool=tool, latency=latency)
    with errors():
        out = execute(s, task, None, json_out, False, {"max_subagents": max(agents, s.max_subagents),
                                                       "max_tool_calls": max(agents * tools, s.max_tool_calls)})
    assert not isinstance(out, str)
    _print_summary(out, json_out)
    _exit_code(out)


def _demo_isolation(s: Settings, tool: str, json_out: bool) -> Settings:
    """The embedded demo's model is swarm's own simulator, whose python calls are known and benign:
    where bubblewrap is missing it runs them without isolation rather than failing, and says so."""
    from swarm.tools.sandbox_spec import probe

    if tool != "python" or s.python_isolation == "off" or (why := probe(s.python_network)) is None:
        return s
    if not json_out:
        err_console.print(f"[yellow]note:[/] the python sandbox is unavailable ({why.split(';')[0]}); the demo's "
                          "simulated model runs its own known code without it. Real runs refuse python calls "
                          "until it is installed.")
    return s.model_copy(update={"python_isolation": "off"})


@app.command()
def resume(run_id: str, detach: bool = typer.Option(False, "--detach"), json_out: bool = JSON_OPT,
           api: str = API_OPT) -> None:
    """Continue an interrupted, failed or cancelled run; committed steps are reused, not repeated."""
    setup_logging()
    with errors():
        s = settings()
        client = _client(api, s)
        harden_process()
        if client is not None:
            out = _remote_execute(client, None, run_id, json_out=json_out, detach=detach)
        else:
            out = execute(s, None, run_id, json_out, detach)
    if isinstance(out, str):
        emit_json({"id": out, "status": "running"}) if json_out else console.print(out)
        return
    _print_summary(out, json_out)
    _exit_code(out)


@app.command()
def cancel(run_id: str, json_out: bool = JSON_OPT, api: str = API_OPT) -> None:
    """Cancel a run: no new model or tool call of it starts anywhere after this returns."""
    from swarm.runtime import open_store

    with errors():
        client = _client(api)
        if client is not None:
            out = client.cancel(run_id)
            status, changed = str(out["status"]), bool(out["changed"])
        else:
            store = open_store(settings())
            changed = store.cancel_run(run_id)
            status = store.run_summary(run_id).status
    if json_out:
        emit_json({"id": run_id, "status": status, "changed": changed})
    else:
        console.print(f"run {run_id}: {status}" + ("" if changed else " (was not running)"))


@app.command("ls")
def list_runs(status: str = typer.Option(None, help="Only runs with this status."),
              limit: int = typer.Option(20, min=1, max=1000), json_out: bool = JSON_OPT,
              api: str = API_OPT) -> None:
    """List recent runs."""
    from rich.table import Table

    from swarm.cli.render import styled
    from swarm.runtime import open_store

    with errors():
        client = _client(api)
        if client is not None:
            runs = client.list_runs(status=status, limit=min(limit, 500))
        else:
            runs = open_store(settings()).list_runs(status=status, limit=limit)
    if json_out:
        emit_json([r.as_dict() for r in runs])
        return
    t = Table("id", "status", "subagents", "tool calls", "critical", "wall s", "task")
    for r in runs:
        t.add_row(r.id, styled(r.status), str(r.subagents), str(r.tool_calls), str(r.critical_steps),
                  f"{r.wall_seconds:.1f}", r.task[:50])
    console.print(t)


@app.command()
def show(run_id: str, json_out: bool = JSON_OPT, api: str = API_OPT) -> None:
    """Show a run's summary and its agent tree."""
    from swarm.runtime import open_store

    with errors():
        client = _client(api)
        if client is not None:
            s, agents = client.summary(run_id), client.agents(run_id)
        else:
            store = open_store(settings())
            s = store.run_summary(run_id)
            agents = store.agent_tree(run_id)
    if json_out:
        emit_json({**s.as_dict(), "agents": agents})
        return
    console.print(summary_table(s))
    console.print(agent_tree(agents))
