"""``swarm worker``: run this machine as a cluster node (Celery workers; each is a sweeper candidate)."""

from __future__ import annotations

import os
from typing import Any

import typer

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
from swarm.config import Settings


def _default_tool_concurrency() -> int:
    return os.cpu_count() or 2


@app.command()
def worker(
    queues: str = typer.Option(
        "llm,tool",
        "--queues",
        "-Q",
        help="Queues this node consumes: llm, tool (comma-separated). "
        "E.g. --queues llm for an LLM-only node, --queues tool for a tool node.",
    ),
    llm_concurrency: int = typer.Option(
        None,
        "--llm-concurrency",
        min=1,
        help="Concurrent steps of the llm worker (threads; default SWARM_LLM_MAX_CONCURRENCY, 128).",
    ),
    tool_concurrency: int = typer.Option(
        None, "--tool-concurrency", min=1, help="Tool worker processes (prefork; default: CPU count)."
    ),
    beat: bool = typer.Option(
        False,
        "--beat",
        hidden=True,
        help="Retired: every node runs the sweeper (one elected at a time). Accepted and ignored.",
    ),
    name: str = typer.Option("", "--name", help="Node-name prefix, e.g. gpu1 → llm-gpu1@host (for Flower)."),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l", help="Celery log level."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Only check configuration, database schema and broker, then exit "
        "(0 = this node can start; usable as a container healthcheck).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the processes it would start, then exit."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run Celery workers for this node (needs SWARM_DATABASE_URL, SWARM_BROKER_URL, model settings).

    Never migrates: run `swarm db upgrade` once first (the compose file's `migrate` service does).
    """
    with errors(json_out):
        s = settings()  # first: importing workers reads the settings too, and would not say it nicely
    from workers.launch import RETIRED_NOTE, RETIRED_QUEUES, NodePlan, parse_queues, run_node

    setup_logging()
    with errors(json_out):
        plan = NodePlan(
            queues=parse_queues(queues),
            llm_concurrency=llm_concurrency or s.llm_max_concurrency,
            tool_concurrency=tool_concurrency or _default_tool_concurrency(),
            name=name,
            loglevel=loglevel,
        )
    if beat or RETIRED_QUEUES & {q.strip() for q in queues.split(",")}:
        err_console.print(f"swarm worker: warning: {RETIRED_NOTE}; ignored", soft_wrap=True)
    commands = plan.commands()
    if dry_run:
        if json_out:
            emit_json({"queues": list(plan.queues), "commands": commands})
        else:
            for c in commands:
                console.print(" ".join(c), soft_wrap=True)
        return
    with errors(json_out):
        report = _check(s, plan.queues, ping_broker=check)
    if check:
        if json_out:
            emit_json(report)
        else:
            console.print(f"ok: schema {report['schema']}, broker reachable, queues {', '.join(plan.queues)}")
            console.print(f"cluster: {report['cluster']} (from the database; every step message carries it)")
            holder = report["sweeper"]["holder"]
            console.print(f"sweeper: {holder or 'nobody (the first worker to start takes the role)'}")
            if "python_isolation" in report:
                console.print(f"python tool: {report['python_isolation']['detail']}")
            for p in report["providers"]:
                limits = ", ".join(f"{k} {p[k]}" for k in ("concurrency", "rpm", "tpm") if p[k] is not None)
                console.print(f"provider {p['name']}: {p['provider']} ({limits or 'no limits'})", soft_wrap=True)
            for server in report.get("mcp", []):
                state = f"started, {server['tools']} tools" if server["ok"] else f"FAILED: {server['error']}"
                console.print(f"mcp server {server['server']}: {state}", soft_wrap=True)
        return
    run_node(plan, started=harden_process)


def _check(s: Settings, queues: tuple[str, ...], *, ping_broker: bool) -> dict[str, Any]:
    from workers.celery_app import app as celery_app
    from workers.celery_app import check_node
    from workers.launch import QUEUE_NAMES

    facts = check_node(s, {QUEUE_NAMES[q] for q in queues})
    report: dict[str, Any] = {"ok": True, "queues": list(queues), "schema": "up to date", **facts}
    from swarm.llm.providers import known_providers

    report["providers"] = known_providers(s)  # named, with key digests: what runs may choose here
    if "tool" in queues:
        from swarm.tools.executor import python_report

        isolation = python_report(s)  # with SWARM_PYTHON_EXECUTOR_URL, no sandbox is needed here
        report["python_isolation"] = isolation
        if not isolation["available"]:
            fail(f"the python tool cannot run here: {isolation['detail']}")
    if ping_broker and s.mcp_config:
        # Each server is started once and listed: a broken one is named here, not at its first call.
        from swarm.tools.mcp_hub import McpHub

        hub = McpHub(s)
        try:
            report["mcp"] = hub.check()
        finally:
            hub.close()
        # Reported, not fatal: the worker runs; calls to a broken server become tool errors.
        report["mcp_ok"] = all(server["ok"] for server in report["mcp"])
    if ping_broker:
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=5)
        except Exception as exc:
            fail(f"cannot reach the broker at SWARM_BROKER_URL: {type(exc).__name__}: {exc}")
        report["broker"] = "reachable"
    return report
