"""Running the API under uvicorn: in the foreground (``swarm serve``) or on a background thread
(tests and benchmarks, which need a real socket for SSE, schemathesis and a browser)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from swarm import logs
from swarm.api.app import create_app
from swarm.config import Settings
from swarm.threaded_server import ThreadedServer


def uvicorn_config(
    app: FastAPI, host: str, port: int, log_level: str = "info", log_format: logs.LogFormat = "text"
) -> uvicorn.Config:
    # access_log off: our RequestLog middleware logs requests without query strings (no keys).
    # ws="none": no websockets here, and not importing them avoids their deprecation warnings.
    # A short graceful-shutdown timeout: SSE streams would otherwise hold shutdown open.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        log_config=logs.uvicorn_log_config(log_format),
    )


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn.Server(uvicorn_config(create_app(settings), host, port, log_level, settings.log_format)).run()


class BackgroundServer(ThreadedServer):
    """An app served on a free 127.0.0.1 port from a daemon thread.

    >>> with BackgroundServer(create_app(settings)) as srv:  # doctest: +SKIP
    ...     httpx.get(f"{srv.url}/healthz")
    """

    label = "API server"
    thread_name = "swarm-api"

    def __init__(self, app: FastAPI, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout, stop_timeout=15.0)
        self.app = app

    def uvicorn_config(self, port: int) -> uvicorn.Config:
        return uvicorn_config(self.app, "127.0.0.1", port, "warning")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
