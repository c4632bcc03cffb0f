"""Operations: liveness, readiness, Prometheus metrics. No API key needed (no tenant data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.schemas import Check, Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    """The process is up and serving. Touches nothing else."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness",
    responses={503: {"model": Ready, "description": "The database or the broker is unreachable."}},
)
def readyz(ctx: Ctx) -> Response:
    """Ready to take work: the database answers and, in cluster mode, so does the broker."""
    checks: dict[str, Check] = {}
    try:
        with ctx.store.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = Check(ok=True)
    except Exception as exc:
        checks["database"] = Check(ok=False, detail=f"{type(exc).__name__}")
    if ctx.runs.mode == "cluster":
        problem = ctx.runs.check()
        checks["broker"] = Check(ok=problem is None, detail=problem)
    ok = all(c.ok for c in checks.values())
    body = Ready(status="ready" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/v1/provider", summary="Model provider capacity", responses=error_responses(401, 403))
def provider(auth: Auth, ctx: Ctx) -> list[dict[str, Any]]:
    """The model provider's shared capacity now: the configured cap and the adaptive limit, calls
    in flight and waiting for capacity, calls made and 429s seen, a Retry-After hold. Empty when
    no provider limits are configured. Any valid key (it holds no tenant data, but like every
    /v1 route it is not for the anonymous: /metrics carries the same figures for scrapers)."""
    return ctx.runs.provider()


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Runs by status, active runs and agents, steps by kind and status, step latency and queue
    wait histograms, tokens, and this server's request latencies."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
