"""Live events as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import ApiError, error_responses
from swarm.api.events import BATCH, EventHub, Subscription, sse_format
from swarm.api.routes.runs import RunId
from swarm.domain.status import RUN_TERMINAL
from swarm.store.store import StateStore

router = APIRouter(prefix="/v1", tags=["runs"])

KEEPALIVE_SECONDS = 15.0


@router.get("/runs/{run_id}/events", summary="Follow a run live (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"description": "`text/event-stream`: each event has `id` (resume with "
                                            "`Last-Event-ID`), `event` (its type) and JSON `data`. The stream "
                                            "ends after `run_done` once the run is finished.",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **error_responses(401, 403, 404, 422, 503)})
async def run_events(
    run_id: RunId, auth: Auth, ctx: Ctx, *,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID",
                                                description="Resume after this event id (sent by EventSource "
                                                            "on reconnect).")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Like Last-Event-ID, as a query parameter.")]
    = None,
    follow: Annotated[bool, Query(description="false: send the events so far, then end.")] = True,
) -> StreamingResponse:
    """Events: run_created, subagent_defined, agent_started, llm_done, tool_done, step_failed,
    agent_done, run_resumed, run_done. Ids never go backwards and none is skipped, even across
    reconnects (see docs/api.md, "Event stream")."""
    start = _start_id(last_event_id, after)
    status = await run_in_threadpool(ctx.store.run_status, run_id, auth.scope)
    sub = ctx.hub.subscribe(run_id)
    return StreamingResponse(_stream(ctx.store, ctx.hub, sub, start, terminal=status in RUN_TERMINAL,
                                     follow=follow),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _start_id(header: str | None, after: int | None) -> int:
    if header is not None and header.strip():
        text = header.strip()
        if not text.isdigit() or len(text) > 18:
            raise ApiError(422, "Last-Event-ID must be an event id (a non-negative integer)")
        return int(text)
    return after or 0


async def _stream(store: StateStore, hub: EventHub, sub: Subscription, last: int, *, terminal: bool,
                  follow: bool) -> AsyncIterator[str]:
    try:
        yield "retry: 1000\n\n"
        # Catch up from the run's own index up to where the hub's live feed starts.
        while True:
            batch = await run_in_threadpool(store.run_events_between, sub.run_id, last, sub.start, BATCH)
            for e in batch:
                yield sse_format(e)
                last = e["id"]
            if len(batch) < BATCH:
                break
        if not follow:
            return
        if terminal and await _finished(store, sub.run_id, last):
            return
        while True:
            try:
                events = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if events is None:
                return
            done = False
            for e in events:
                if e["id"] <= last:
                    continue
                yield sse_format(e)
                last = e["id"]
                done = done or e["type"] == "run_done"
            if done and await _finished(store, sub.run_id, last):
                return
    finally:
        hub.unsubscribe(sub)


async def _finished(store: StateStore, run_id: str, last: int) -> bool:
    """The run is over and the client has its last event (a resume would add more: keep going)."""
    status = await run_in_threadpool(store.run_status, run_id)
    return status in RUN_TERMINAL and await run_in_threadpool(store.last_run_event_id, run_id) <= last
