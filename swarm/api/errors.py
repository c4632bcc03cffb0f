"""Errors as JSON: every failure answers ``{"error": code, "message": ..., "fields": [...]}``.

Clients (and the CLI) branch on the code; people read the message. A stack trace never
reaches the client: unexpected exceptions become a bare 500 and are logged here.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from swarm.exceptions import (
    ConfigError,
    InputError,
    NotFound,
    QuotaExceeded,
    StateError,
    StoreUnavailable,
    SwarmError,
)

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `body.limits.max_subagents` or `query.limit`.")
    message: str


class ErrorBody(BaseModel):
    error: str = Field(
        description="Machine-readable code: unauthorized, forbidden, not_found, conflict, "
        "invalid_request, unavailable, ..."
    )
    message: str = Field(description="What went wrong and what to do about it.")
    fields: list[FieldError] = Field(default_factory=list, description="Per-field problems (422 only).")


class ApiError(HTTPException):
    """An HTTP error with a message meant for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)


def error_response(
    status: int, message: str, *, fields: list[FieldError] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=CODES.get(status, "error"), message=message, fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc) or "request"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow names only the first route matching the path (e.g. just POST for
        # /v1/runs, which also has GET); list every method the path supports.
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(sorted(allowed))
        message = f"{request.method} is not supported here; use {' or '.join(sorted(allowed))}"
    return error_response(exc.status_code, message, headers=headers or None)


def _allowed_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for regex, route_methods in getattr(request.app.state, "route_methods", ()):
        if regex.match(request.url.path):
            methods |= route_methods
    return methods or {"GET"}


def _message(error: Any) -> str:
    """A validation error's message; our validators' own words without pydantic's "Value error, "
    (the CLI says the same words: ``domain/run_limits.py``)."""
    cause = (error.get("ctx") or {}).get("error")
    if error.get("type") == "value_error" and cause is not None:
        return str(cause)
    return str(error.get("msg", "invalid"))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [FieldError(field=_loc(e.get("loc", ())), message=_message(e)) for e in exc.errors()]
    summary = "; ".join(f"{f.field}: {f.message}" for f in fields[:5]) or "invalid request"
    return error_response(422, f"invalid request: {summary}", fields=fields)


async def _swarm_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NotFound):
        return error_response(404, str(exc))
    if isinstance(exc, InputError):
        return error_response(422, str(exc))
    if isinstance(exc, StateError):
        return error_response(409, str(exc))
    if isinstance(exc, QuotaExceeded):
        return error_response(429, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after))})
    if isinstance(exc, StoreUnavailable):
        return error_response(503, "the database is unavailable; retry shortly", headers={"Retry-After": "2"})
    if isinstance(exc, ConfigError):
        log.error("configuration error: %s", exc)
        return error_response(503, f"the server is misconfigured: {exc}")
    log.error("unexpected %s: %s", type(exc).__name__, exc)
    return error_response(500, "internal error (logged on the server)")


async def _database_busy(_: Request, exc: Exception) -> JSONResponse:
    # Pool exhausted, too many clients, a restart under way: transient, so 503 rather than 500.
    log.warning("database error: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])
    return error_response(503, "the database is unavailable or busy; retry shortly", headers={"Retry-After": "2"})


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal error (logged on the server)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SwarmError, _swarm_error)
    app.add_exception_handler(sa_exc.OperationalError, _database_busy)
    app.add_exception_handler(sa_exc.TimeoutError, _database_busy)
    app.add_exception_handler(Exception, _unexpected)


#: ``responses=`` for routes: the error bodies every protected route may answer with.
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The body could not be read (not UTF-8 JSON).",
        401: "Missing or unknown API key.",
        403: "The API key was revoked.",
        404: "No such run (or it belongs to another tenant).",
        409: "The run's state does not allow this.",
        413: "The request body is larger than the server accepts (SWARM_API_MAX_BODY_BYTES).",
        422: "Invalid input; `fields` says where.",
        503: "The database (or broker) is unavailable.",
    }
    return {c: {"model": ErrorBody, "description": descriptions.get(c, CODES.get(c, "error"))} for c in codes}
