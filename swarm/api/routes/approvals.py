"""Approvals: list the tool calls awaiting a human decision, and decide them (once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.schemas import RUN_ID_PATTERN, ApprovalList, DecisionIn
from swarm.domain import approvals
from swarm.store.types import ApprovalInfo

router = APIRouter(prefix="/v1", tags=["runs"])

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="A run id (32 hex characters).")]
StepId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The tool call's step id (32 hex characters).")]


@router.get(
    "/approvals",
    response_model=ApprovalList,
    summary="Tool calls awaiting approval, in every run",
    responses=error_responses(401, 403, 422, 503),
)
def list_pending(
    auth: Auth,
    ctx: Ctx,
    step_prefix: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9a-f]{1,32}$",
            description="Only requests (decided or not) whose step id starts with this (a step id typed short).",
        ),
    ] = None,
) -> ApprovalList:
    """The caller's tenant's undecided requests, oldest first (with `step_prefix`: decided ones too)."""
    return ApprovalList(approvals=ctx.runs.approvals(None, scope=auth.scope, step_prefix=step_prefix))


@router.get(
    "/runs/{run_id}/approvals",
    response_model=ApprovalList,
    summary="A run's approval requests",
    responses=error_responses(401, 403, 404, 422, 503),
)
def list_of_run(
    run_id: RunId,
    auth: Auth,
    ctx: Ctx,
    pending: Annotated[bool, Query(description="Only the requests nobody decided yet.")] = False,
) -> ApprovalList:
    """Every approval request of the run, oldest first, with its decision (`status`: pending,
    approved or rejected), its note, who decided and when."""
    return ApprovalList(approvals=ctx.runs.approvals(run_id, pending=pending, scope=auth.scope))


@router.post(
    "/runs/{run_id}/approvals/{step_id}",
    response_model=ApprovalInfo,
    summary="Approve or reject a tool call",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
def decide(run_id: RunId, step_id: StepId, body: Annotated[DecisionIn, Body()], auth: Auth, ctx: Ctx) -> ApprovalInfo:
    """Decide once: `approve` runs the call (dispatched like any ready step); `reject` hands the
    model a tool error carrying `note` (required) instead. 409 for a second decision, or while
    the run is not running (resume it first)."""
    decision = approvals.decision_of(body.decision)
    return ctx.runs.decide(step_id, decision, body.note, run_id=run_id, scope=auth.scope, by=f"key:{auth.key.prefix}")
