"""Retention: delete a run, or every run older than an age."""

from __future__ import annotations

import typer

from swarm.cli.common import (
    API_OPT,
    JSON_OPT,
    RUN_ID_ARG,
    app,
    console,
    emit_json,
    errors,
    fail,
    runs_service,
    settings,
)
from swarm.domain.status import RUN_TERMINAL, RunStatus

ENDED = ",".join(sorted(RUN_TERMINAL))


@app.command()
def delete(run_id: str = RUN_ID_ARG, json_out: bool = JSON_OPT, api: str = API_OPT) -> None:
    """Delete an ended run with all its agents, messages, steps, events and files."""
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            freed = runs.delete(runs.resolve(run_id))
        finally:
            runs.close()
    if json_out:
        emit_json(freed.as_dict())
    else:
        console.print(
            f"deleted run {freed.runs[0]}: {sum(freed.rows.values())} rows ({freed.data_bytes} bytes of data), "
            f"{freed.file_bytes} file bytes"
        )


@app.command()
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Age of the runs to delete: 30d, 12h, 90m, 3600s..."),
    status: str = typer.Option(ENDED, help="Comma-separated statuses of the runs to delete (ended ones only)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
    json_out: bool = JSON_OPT,
) -> None:
    """Delete every run that ended longer ago than --older-than, in small batches while other runs
    keep going. Works on the database itself (SWARM_DATABASE_URL), not through a server."""
    from swarm.domain.durations import parse_age
    from swarm.runs.local import StoreRuns

    with errors(json_out):
        age = parse_age(older_than)
        statuses = _statuses(status)
        runs = runs_service(settings().model_copy(update={"api_url": ""}))
        try:
            assert isinstance(runs, StoreRuns)
            freed = runs.prune(age, statuses, dry_run=dry_run)
        finally:
            runs.close()
    if json_out:
        emit_json({**freed.as_dict(), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    rows = sum(freed.rows.values())
    console.print(
        f"{verb} {len(freed.runs)} runs: {rows} rows ({freed.data_bytes} bytes of data), {freed.file_bytes} file bytes"
    )


def _statuses(text: str) -> list[RunStatus]:
    out = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word not in RUN_TERMINAL:
            fail(f"--status {word!r}: only ended runs are pruned ({ENDED})", 3)
        out.append(RunStatus(word))
    return out
