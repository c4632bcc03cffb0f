"""Trajectory export as JSON Lines."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.routes.runs import RunId

router = APIRouter(prefix="/v1", tags=["runs"])

NDJSON = "application/x-ndjson"


@router.get(
    "/runs/{run_id}/export",
    summary="Export a run's trajectory (JSONL)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON record per line: a `run` header, one `agent` record per "
            "agent (messages and steps), then `stage` critical-step annotations.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 404, 422, 503),
    },
)
def export_run(run_id: RunId, auth: Auth, ctx: Ctx) -> StreamingResponse:
    """Every agent's messages and tool calls with timings and tokens, the agent tree and per-stage
    critical-step annotations: for evaluation, and usable as training data."""
    # The run is looked up here, so an unknown run is a 404 rather than a broken stream.
    records = ctx.runs.export(run_id, scope=auth.scope)
    return StreamingResponse(
        records, media_type=NDJSON, headers={"Content-Disposition": f'attachment; filename="run-{run_id}.jsonl"'}
    )
