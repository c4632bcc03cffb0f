"""``swarm worker``: run this machine as a cluster node (Celery workers, optionally the sweeper)."""

from __future__ import annotations

import os
from typing import Any

import typer

from swarm.cli.common import JSON_OPT, app, console, emit_json, errors, fail, harden_process, settings, setup_logging
from swarm.config import Settings


def _default_tool_concurrency() -> int:
    return os.cpu_count() or 2


@app.command()
def worker(
    queues: str = typer.Option(
        "llm,tool,control",
        "--queues",
        "-Q",
        help="Queues this node consumes: llm, tool, control (comma-separated). "
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
        help="Also run the sweeper schedule (celery beat + a swarm.control worker). "
        "Run exactly one per cluster; extra ones are harmless but useless.",
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
    from workers.launch import NodePlan, parse_queues, run_node

    setup_logging()
    s = settings()
    with errors(json_out):
        plan = NodePlan(
            queues=parse_queues(queues),
            llm_concurrency=llm_concurrency or s.llm_max_concurrency,
            tool_concurrency=tool_concurrency or _default_tool_concurrency(),
            beat=beat,
            name=name,
            loglevel=loglevel,
        )
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
            if "python_isolation" in report:
                console.print(f"python tool: {report['python_isolation']['detail']}")
        return
    raise typer.Exit(run_node(plan, started=harden_process))


def _check(s: Settings, queues: tuple[str, ...], *, ping_broker: bool) -> dict[str, Any]:
    from workers.celery_app import app as celery_app
    from workers.celery_app import check_node
    from workers.launch import QUEUE_NAMES

    check_node(s, {QUEUE_NAMES[q] for q in queues})
    report: dict[str, Any] = {"ok": True, "queues": list(queues), "schema": "up to date"}
    if "tool" in queues:
        from swarm.tools.executor import python_report

        isolation = python_report(s)  # with SWARM_PYTHON_EXECUTOR_URL, no sandbox is needed here
        report["python_isolation"] = isolation
        if not isolation["available"]:
            fail(f"the python tool cannot run here: {isolation['detail']}")
    if ping_broker:
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=5)
        except Exception as exc:
            fail(f"cannot reach the broker at SWARM_BROKER_URL: {type(exc).__name__}: {exc}")
        report["broker"] = "reachable"
    return report
