"""The web dashboard: a static shell (no build step) that talks to /v1 with the user's API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

#: The page runs only its own script and talks only to this server; it shows model output, so
#: a strict policy is the second line of defence after never inserting that output as HTML. blob:
#: images are a run's image files, fetched with the key and previewed (static/files.js).
SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@router.get("/dashboard")
@router.get("/dashboard/")
@router.get("/dashboard/runs/{run_id}")
def shell(run_id: str | None = None) -> FileResponse:
    # One page; the script reads the run id from the path. No data here, so no key needed.
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)
