"""The web dashboard: a static shell (no build step) that talks to /v1 with the user's API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@router.get("/dashboard")
@router.get("/dashboard/")
@router.get("/dashboard/runs/{run_id}")
def shell(run_id: str | None = None) -> FileResponse:
    # One page; the script reads the run id from the path. No data here, so no key needed.
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
