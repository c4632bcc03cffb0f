"""Runs: submit, list, inspect, cancel, resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Response

from swarm import __version__
from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.limits import ThreadedBodyRoute
from swarm.api.schemas import (
    RUN_ID_PATTERN,
    AgentOut,
    AgentTree,
    CancelOut,
    DeletedOut,
    ForkIn,
    ResumeIn,
    ResumeOut,
    RunAccepted,
    RunCreate,
    RunList,
    ServerInfo,
    Timeline,
)
from swarm.domain.liveness import RunState
from swarm.domain.status import RunStatus
from swarm.runs import RunRequest
from swarm.store.types import RunSummary
from swarm.tools.executor import python_report

# A run's body may carry megabytes of base64 attachments: parsed and validated on a worker thread.
router = APIRouter(prefix="/v1", tags=["runs"], route_class=ThreadedBodyRoute)

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="A run id (32 hex characters).")]


def links(run_id: str) -> dict[str, str]:
    base = f"/v1/runs/{run_id}"
    return {
        "self": base,
        "agents": f"{base}/agents",
        "events": f"{base}/events",
        "export": f"{base}/export",
        "timeline": f"{base}/timeline",
        "approvals": f"{base}/approvals",
        "files": f"{base}/files",
        "dashboard": f"/dashboard/runs/{run_id}",
    }


@router.post(
    "/runs",
    status_code=202,
    response_model=RunAccepted,
    summary="Submit a run",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
def create_run(
    body: RunCreate,
    auth: Auth,
    ctx: Ctx,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=r"^[\x21-\x7e]{1,255}$",
            description="Submitting again with the same key returns the run the first submission created "
            "(same id, nothing started twice): safe retries after a timeout.",
        ),
    ] = None,
) -> RunAccepted:
    """Start a swarm on `task`. Returns at once (202) with the run id; follow it with
    `GET /v1/runs/{id}/events`."""
    lim = body.limits
    run_id = ctx.runs.submit(
        RunRequest(
            task=body.task,
            model=body.model,
            max_subagents=lim.max_subagents,
            max_tool_calls=lim.max_tool_calls,
            max_steps_per_agent=lim.max_steps_per_agent,
            max_wall_seconds=lim.max_wall_seconds,
            max_depth=lim.max_depth,
            max_spawns_per_turn=lim.max_spawns_per_turn,
            max_usd=lim.max_usd,
            max_tokens=lim.max_tokens,
            attachments=tuple(a.to_attachment() for a in body.attachments),
            tenant=auth.tenant,
            idempotency_key=idempotency_key,
            approve_tools=tuple(body.approve_tools),
            mcp=None if body.mcp is None else body.mcp.model_dump_json(exclude_none=True),
            provider=body.provider,
            provider_concurrency=body.provider_concurrency,
            provider_rpm=body.provider_rpm,
            provider_tpm=body.provider_tpm,
        )
    )
    response.headers["Location"] = f"/v1/runs/{run_id}"
    return RunAccepted(id=run_id, status=RunStatus.RUNNING.value, links=links(run_id))


@router.get("/runs", response_model=RunList, summary="List runs", responses=error_responses(401, 403, 422, 503))
def list_runs(
    auth: Auth,
    ctx: Ctx,
    status: Annotated[
        RunState | None,
        Query(
            description="Only runs in this state: `running` lists the runs something works on, `interrupted` "
            "the running runs nobody does (their process died or no worker is alive)."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    id_prefix: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-f]{1,32}$", description="Only runs whose id starts with this (a run id typed short)."),
    ] = None,
) -> RunList:
    """The caller's tenant's runs, newest first."""
    rows = ctx.runs.list_runs(
        status=status.value if status else None, limit=limit + 1, offset=offset, scope=auth.scope, id_prefix=id_prefix
    )
    return RunList(runs=rows[:limit], limit=limit, offset=offset, has_more=len(rows) > limit)


@router.get(
    "/runs/{run_id}",
    response_model=RunSummary,
    summary="A run's summary",
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_run(run_id: RunId, auth: Auth, ctx: Ctx) -> RunSummary:
    """Counters, critical steps (live while running), wall time, tokens and the result."""
    return ctx.runs.summary(run_id, scope=auth.scope)


@router.get(
    "/runs/{run_id}/agents",
    response_model=AgentTree,
    summary="A run's agent tree",
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_agents(run_id: RunId, auth: Auth, ctx: Ctx) -> AgentTree:
    agents = ctx.runs.agents(run_id, scope=auth.scope)
    return AgentTree(run_id=run_id, agents=[AgentOut.model_validate(a) for a in agents])


@router.get(
    "/runs/{run_id}/timeline",
    response_model=Timeline,
    summary="Agents and steps over time",
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_timeline(run_id: RunId, auth: Auth, ctx: Ctx) -> Timeline:
    """Every step with its start and end: what the dashboard's Gantt chart draws."""
    return Timeline.model_validate(ctx.runs.timeline(run_id, scope=auth.scope))


@router.post(
    "/runs/{run_id}/cancel",
    response_model=CancelOut,
    summary="Cancel a run",
    responses=error_responses(401, 403, 404, 422, 503),
)
def cancel_run(run_id: RunId, auth: Auth, ctx: Ctx) -> CancelOut:
    """Stop the run now: every open step is cancelled in one transaction, so no model or tool call
    of it starts anywhere afterwards, and calls in flight cannot commit. Idempotent."""
    out = ctx.runs.cancel(run_id, scope=auth.scope)
    return CancelOut(id=run_id, status=out.status, changed=out.changed)


@router.delete(
    "/runs/{run_id}",
    response_model=DeletedOut,
    summary="Delete a run",
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
def delete_run(run_id: RunId, auth: Auth, ctx: Ctx) -> DeletedOut:
    """Delete an ended run with all its agents, messages, steps, events and files, in small
    batches that never hold long locks. 409 while it runs: cancel it first."""
    return DeletedOut.model_validate(ctx.runs.delete(run_id, scope=auth.scope).as_dict())


@router.post(
    "/runs/{run_id}/resume",
    response_model=ResumeOut,
    summary="Resume a run",
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def resume_run(run_id: RunId, auth: Auth, ctx: Ctx, body: Annotated[ResumeIn | None, Body()] = None) -> ResumeOut:
    """Continue a failed, cancelled or interrupted run from where it stood. Committed model and
    tool calls are reused, never repeated. 409 if it already succeeded. An optional body
    (`max_usd`, `max_tokens`) replaces the run's spend caps: raise them to continue a run that
    stopped with reason `budget`."""
    caps = body or ResumeIn()
    n = ctx.runs.resume(run_id, scope=auth.scope, max_usd=caps.max_usd, max_tokens=caps.max_tokens)
    return ResumeOut(id=run_id, status=ctx.runs.summary(run_id).status, dispatched=n)


@router.post(
    "/runs/{run_id}/fork",
    status_code=202,
    response_model=RunAccepted,
    summary="Fork a run at a step",
    responses=error_responses(400, 401, 403, 404, 409, 422, 503),
)
def fork_run(run_id: RunId, body: ForkIn, auth: Auth, ctx: Ctx, response: Response) -> RunAccepted:
    """Start a new run that carries this run's committed history up to step `at_step` and goes on
    from there; `message` replaces what the step's agent reads before that model call. No model
    call committed before the step is sent again. The new run records its origin
    (`forked_from_run_id`, `forked_at_step_id`); the origin lists it in `forks`. The origin is
    not changed, and may still be running."""
    fork_id = ctx.runs.fork(run_id, body.at_step, message=body.message, scope=auth.scope)
    response.headers["Location"] = f"/v1/runs/{fork_id}"
    return RunAccepted(id=fork_id, status=RunStatus.RUNNING.value, links=links(fork_id))


@router.get(
    "/info",
    response_model=ServerInfo,
    tags=["server"],
    summary="Who am I, and what is this server",
    responses=error_responses(401, 403),
)
def info(auth: Auth, ctx: Ctx) -> ServerInfo:
    isolation = python_report(ctx.settings)
    return ServerInfo(
        version=__version__,
        mode=ctx.runs.mode,
        tenant=auth.tenant,
        admin=auth.key.admin,
        key_prefix=auth.key.prefix,
        flower_url=ctx.flower_url or None,
        python_isolation=str(isolation["python_isolation"]),
        python_isolation_available=bool(isolation["available"]),
    )
