"""Request bodies: a size cap checked before anything is read, and large ones decoded off the event loop.

One event loop serves every request and every SSE stream of the server, so nothing slow may run on
it: a 16 MiB JSON body takes ~10 ms to parse and, with base64 attachments to check, ~0.5 s to
validate. :class:`ThreadedBodyRoute` does both on a worker thread for large bodies.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm.api.errors import ApiError, error_response

#: JSON bodies at least this large are parsed and validated on a worker thread.
THREAD_BODY_BYTES = 64 * 1024


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than this server accepts ({limit} bytes, SWARM_API_MAX_BODY_BYTES); "
        "send smaller attachments"
    )


class BodyLimit:
    """Refuses request bodies over ``max_bytes``: a larger Content-Length is answered 413 at once,
    before a byte of the body is read; a body without one (chunked) is counted as it is read and
    refused (413) as soon as it passes the limit, so it is never held in memory whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.strip().isdigit() and int(value) > self.max_bytes:
                await error_response(413, _too_large(self.max_bytes), headers={"Connection": "close"})(
                    scope, receive, send
                )
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read: the app's HTTPException handler answers 413.
                    raise ApiError(413, _too_large(self.max_bytes), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class ThreadedBodyRoute(APIRoute):
    """An APIRoute that parses and validates a large JSON body on a worker thread, then hands the
    route the validated model (FastAPI does not validate a model instance again). Errors come out
    as FastAPI's own would: a 422 naming the field, ``body.<field>...``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        field = self.body_field
        annotation = getattr(getattr(field, "field_info", None), "annotation", None)
        if field is None or annotation is None:
            return handler
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)

        async def route_handler(request: Request) -> Response:
            if _is_json(request.headers.get("content-type")):
                body = await request.body()  # within BodyLimit's cap
                if len(body) >= THREAD_BODY_BYTES:
                    request._json = await run_in_threadpool(_decode, body, adapter)
            return await handler(request)

        return route_handler


def _decode(body: bytes, adapter: TypeAdapter[Any]) -> Any:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from exc
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
