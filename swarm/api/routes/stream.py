"""Live events as Server-Sent Events, resumable with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.events import EventHub, Subscription, sse_format
from swarm.api.routes.runs import RunId
from swarm.domain.events import EventType
from swarm.domain.status import RUN_TERMINAL
from swarm.runs.follow import BATCH, Abandoned
from swarm.store.store import StateStore

router = APIRouter(prefix="/v1", tags=["runs"])

KEEPALIVE_SECONDS = 15.0
#: The last message of a complete stream. A stream that closes without it (server restarting,
#: reader too slow) is to be resumed with Last-Event-ID; one that ends with it is over.
END = "event: end\ndata: {}\n\n"


@router.get(
    "/runs/{run_id}/events",
    summary="Follow a run live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: each event has `id` (resume with "
            "`Last-Event-ID`), `event` (its type) and JSON `data`. Once the run "
            "is finished and all its events are sent, an `end` event (no id) "
            "closes the stream; a stream closed without it is to be resumed.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 404, 422, 503),
    },
)
async def run_events(
    run_id: RunId,
    auth: Auth,
    ctx: Ctx,
    *,
    # Plain str/int with defaults rather than Optional: HTTP has no null header or query value.
    last_event_id: Annotated[
        str,
        Header(
            alias="Last-Event-ID",
            pattern=r"^\s*[0-9]{0,18}\s*$",
            description="Resume after this event id (sent by EventSource on reconnect).",
        ),
    ] = "",
    after: Annotated[int, Query(ge=0, le=2**62, description="Like Last-Event-ID, as a query parameter.")] = 0,
    follow: Annotated[bool, Query(description="false: send the events so far, then end.")] = True,
) -> StreamingResponse:
    """Events: run_created, subagent_defined, agent_started, llm_done, tool_done, step_failed,
    agent_done, run_resumed, run_done. Ids never go backwards and none is skipped, even across
    reconnects (see docs/api.md, "Event stream")."""
    start = _start_id(last_event_id, after)
    status = await run_in_threadpool(ctx.store.run_status, run_id, auth.scope)
    sub = ctx.hub.subscribe(run_id)
    return StreamingResponse(
        _stream(ctx.store, ctx.hub, sub, start, terminal=status in RUN_TERMINAL, follow=follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _start_id(header: str, after: int) -> int:
    return int(header.strip()) if header.strip() else after  # the pattern admits digits only


async def _stream(
    store: StateStore, hub: EventHub, sub: Subscription, last: int, *, terminal: bool, follow: bool
) -> AsyncIterator[str]:
    try:
        yield "retry: 1000\n\n"
        # Catch up from the run's own index up to where the hub's live feed starts.
        while True:
            batch = await run_in_threadpool(store.run_events_between, sub.run_id, last, sub.start, BATCH)
            if batch:
                yield "".join(sse_format(e) for e in batch)
                last = batch[-1]["id"]
            if len(batch) < BATCH:
                break
        if not follow:
            yield END
            return
        # Ending: once the run is over AND the client has its last event. run_done is not always
        # the last event of a run (the orchestrator's llm_done commits with it), and a resume
        # can follow it, so check the store rather than trusting any one event.
        # An interrupted run (nobody works on it: ``Abandoned``) ends the stream the same way; the
        # client reads the run's state after `end` to tell which.
        ending, abandoned, quiet_since = terminal, Abandoned(), time.monotonic()
        while True:
            if ending:
                status = await run_in_threadpool(store.run_status, sub.run_id)
                if status not in RUN_TERMINAL:
                    ending = False
                elif await run_in_threadpool(store.last_run_event_id, sub.run_id) <= last:
                    yield END
                    return
            if (
                abandoned.due()
                and abandoned.note(await run_in_threadpool(store.run_state, sub.run_id))
                and await run_in_threadpool(store.last_run_event_id, sub.run_id) <= last
            ):
                yield END
                return
            try:
                events = await asyncio.wait_for(sub.queue.get(), abandoned.every)
            except TimeoutError:
                if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keepalive\n\n"
                continue
            if events is None:
                return
            abandoned.alive()
            # One write per batch, of text the hub formatted once for all watchers: with 50
            # watchers a write per event per watcher would cost the server more than the run.
            fresh = [e for e in events if e["id"] > last]
            if fresh:
                yield "".join(e["sse"] for e in fresh)
                last = fresh[-1]["id"]
                ending = ending or any(e["type"] == EventType.RUN_DONE for e in fresh)
    finally:
        hub.unsubscribe(sub)
