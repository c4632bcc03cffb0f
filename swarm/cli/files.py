"""``swarm files``: list a run's workspace files, or download them."""

from __future__ import annotations

import os
from pathlib import Path

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
from swarm.domain import files as run_files
from swarm.domain.workspace import human_bytes
from swarm.exceptions import InputError
from swarm.store.types import ArtifactInfo


@app.command()
def files(
    run_id: str = RUN_ID_ARG,
    get: list[str] = typer.Option(None, "--get", help="Download this file (as listed); may be repeated."),
    all_files: bool = typer.Option(False, "--all", help="Download every file of the run."),
    out: Path = typer.Option(Path("."), "-o", "--output", help="Directory to download into (created if needed)."),
    json_out: bool = JSON_OPT,
    api: str = API_OPT,
) -> None:
    """List a run's files (path, size, sha256, the step that last wrote it), or download them
    with --get PATH or --all into -o DIR, keeping their paths. Nothing is written outside DIR."""
    with errors(json_out):
        runs = runs_service(settings(), api)
        try:
            run_id = runs.resolve(run_id)
            listed = runs.files(run_id)
            if not get and not all_files:
                _show(run_id, listed, json_out)
                return
            wanted = [f.path for f in listed] if all_files else [run_files.check_path(p) for p in get]
            saved: list[tuple[ArtifactInfo, Path]] = []
            for path in wanted:
                info, data = runs.read_file(run_id, path)
                saved.append((info, _write(out, info.path, data)))
        finally:
            runs.close()
    if json_out:
        emit_json({"run_id": run_id, "saved": [{**info.as_dict(), "saved_to": str(to)} for info, to in saved]})
    else:
        for info, to in saved:
            console.print(f"{to}  ({human_bytes(info.size)})", soft_wrap=True, markup=False)


def _show(run_id: str, listed: list[ArtifactInfo], json_out: bool) -> None:
    if json_out:
        emit_json({"run_id": run_id, "files": [f.as_dict() for f in listed]})
        return
    if not listed:
        console.print(f"run {run_id} has no files")
        return
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for name, justify in (("path", "left"), ("size", "right"), ("sha256", "left"), ("written by step", "left")):
        t.add_column(name, justify=justify, no_wrap=name != "path")  # type: ignore[arg-type]
    for f in listed:
        t.add_row(f.path, human_bytes(f.size), f.sha256[:12], f.step_id or "(attachment)")
    console.print(t)


def _write(out: Path, path: str, data: bytes) -> Path:
    """Write a run file under ``out`` at its path; never outside it (the path is checked, and no
    symlink under ``out`` is followed to the file)."""
    run_files.check_path(path)
    out.mkdir(parents=True, exist_ok=True)
    parent = out.resolve()
    *dirs, name = path.split("/")
    for part in dirs:  # one level at a time: a symlink met on the way is refused, not followed
        parent = parent / part
        if parent.is_symlink():
            raise InputError(f"{path!r} would be written outside {out} (a symlink there points elsewhere)")
        parent.mkdir(exist_ok=True)
    target = parent / name
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return target
