"""Approval commands: approvals, approve, reject — human decisions on tool calls.

A run (``swarm run --approve python``) or the deployment (SWARM_APPROVE_TOOLS) names tools whose
calls wait for a decision; these commands list and decide them through the Runs service, so they
work the same on the local database, the cluster and a server (``--api``).
"""

from __future__ import annotations

import time

import typer

from swarm.cli.common import API_OPT, JSON_OPT, app, console, emit_json, errors, runs_service, settings
from swarm.domain.approvals import Decision
from swarm.store.types import ApprovalInfo

STEP_ID_ARG = typer.Argument(..., help="The tool call's step id, or any unique prefix of one (`swarm approvals`).")


@app.command("approvals")
def list_approvals(
    run_id: str = typer.Argument(None, help="A run id or unique prefix (default: every run's pending requests)."),
    all_: bool = typer.Option(False, "--all", help="With a run: decided requests too, not only the pending."),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """List tool calls waiting for your decision (of one run, or of every run)."""
    from rich.table import Table

    from swarm.cli.render import styled

    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            rid = runs.resolve(run_id) if run_id else None
            found = runs.approvals(rid, pending=not all_)
        finally:
            runs.close()
    if json_out:
        emit_json([a.as_dict() for a in found])
        return
    if not found:
        console.print("no tool calls awaiting approval" if not all_ else "no approval requests")
        return
    table = Table(show_lines=False)
    for col in ("step", "run", "agent", "tool", "arguments", "waiting", "status"):
        table.add_column(col)
    now = time.time()
    for a in found:
        args = (a.arguments or "").replace("\n", " ")
        table.add_row(
            a.step_id,
            a.run_id[:8],
            a.agent or a.agent_id[:8],
            a.tool,
            args if len(args) <= 60 else args[:59] + "…",
            f"{max(0.0, now - a.requested_at):.0f}s",
            styled(a.status),
        )
    console.print(table)
    console.print("decide with `swarm approve STEP_ID` or `swarm reject STEP_ID --reason TEXT`")


def _decide(step_id: str, decision: Decision, note: str | None, json_out: bool, api: str | None) -> ApprovalInfo:
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            return runs.decide(step_id, decision, note)
        finally:
            runs.close()
    raise AssertionError("unreachable")  # errors() exits on every failure


def _show(info: ApprovalInfo, json_out: bool) -> None:
    if json_out:
        emit_json(info.as_dict())
    else:
        note = f": {info.note}" if info.note else ""
        console.print(f"step {info.step_id} ({info.tool}, run {info.run_id[:8]}): {info.status}{note}")


@app.command()
def approve(
    step_id: str = STEP_ID_ARG,
    note: str = typer.Option(None, "--note", help="A note kept with the decision."),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """Approve a tool call: it runs now. A decision is taken once."""
    _show(_decide(step_id, Decision.APPROVED, note, json_out, api), json_out)


@app.command()
def reject(
    step_id: str = STEP_ID_ARG,
    reason: str = typer.Option(..., "--reason", help="Why: the model is told it as the tool call's error."),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """Reject a tool call: it never runs, and the model gets a tool error carrying the reason."""
    _show(_decide(step_id, Decision.REJECTED, reason, json_out, api), json_out)
