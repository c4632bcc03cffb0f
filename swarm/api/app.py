"""The FastAPI application: wiring of store, Runs service, event hub, routes, errors and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm import __version__
from swarm.api import errors
from swarm.api.context import ServerContext, flower_url
from swarm.api.events import EventHub
from swarm.api.limits import BodyLimit
from swarm.api.metrics import make_registry
from swarm.api.provider_metrics import ProviderCollector
from swarm.api.ratelimit import KeyRateLimit
from swarm.api.routes import approvals, dashboard, export, files, ops, stream
from swarm.api.routes import runs as run_routes
from swarm.config import Settings
from swarm.runs import Runs, open_runs
from swarm.store.store import StateStore

log = logging.getLogger("swarm.api")

DESCRIPTION = """\
Submit, follow, cancel, resume and export LLM agent swarm runs.

Every `/v1` route needs `Authorization: Bearer <key>` (create keys with `swarm keys create`); a key
sees only its tenant's runs. Errors are JSON: `{"error": code, "message": ..., "fields": [...]}`.
The web dashboard is at `/dashboard/`.
"""


def create_app(
    settings: Settings, *, store: StateStore | None = None, runs: Runs | None = None, hub_poll: float = 0.1
) -> FastAPI:
    """The API app. ``store``/``runs`` default to the configured database and execution mode;
    they are opened when the app starts (lifespan) and closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from swarm.runtime import open_store

        own_store = store is None
        st = store or open_store(settings)
        service = runs or open_runs(settings, store=st, serving=True)
        hub = EventHub(st, poll_interval=hub_poll)
        await hub.start()
        app.state.ctx = ServerContext(settings, st, service, hub, KeyRateLimit(settings), flower_url())
        app.state.registry, app.state.request_seconds = make_registry(st)
        app.state.registry.register(ProviderCollector(service.provider))
        log.info("swarm API ready (%s mode)", service.mode)
        try:
            yield
        finally:
            await hub.close()
            if runs is None:
                service.close()
            if own_store:
                st.engine.dispose()

    app = FastAPIOffline(
        title="swarm",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc load their scripts from this server, not a CDN: they work offline.
        static_url="/docs/static",
        openapi_tags=[
            {"name": "runs", "description": "Submit and follow swarm runs."},
            {"name": "server", "description": "About this server and your key."},
            {"name": "operations", "description": "Health, readiness and metrics (no key)."},
        ],
    )
    errors.install(app)
    modules = (run_routes, approvals, stream, export, files, ops, dashboard)
    for module in modules:
        app.include_router(module.router)
    # For 405 answers' Allow header (see errors._http_error).
    app.state.route_methods = [
        (r.path_regex, set(r.methods or ())) for m in modules for r in m.router.routes if isinstance(r, APIRoute)
    ]
    _document_providers(app, settings)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestLog)  # outermost: refused bodies are logged and counted too
    return app


def _document_providers(app: FastAPI, settings: Settings) -> None:
    """The schema lists the providers this server knows (SWARM_PROVIDERS): another name is
    refused with 422, so a client generated from the schema knows the choice."""
    names = sorted(settings.named_providers())
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            field = schema["components"]["schemas"]["RunCreate"]["properties"]["provider"]
            field["anyOf"] = ([{"type": "string", "enum": names}] if names else []) + [{"type": "null"}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class RequestLog:
    """Access log and request-latency metric. Logs the path WITHOUT its query string, and no
    headers: a key passed as ``?key=`` to the dashboard must never reach a log file."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - t0
            route = _route(scope)
            hist: Any = getattr(scope["app"].state, "request_seconds", None)
            if hist is not None:
                hist.labels(scope["method"], route, str(status)).observe(elapsed)
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed * 1000)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
