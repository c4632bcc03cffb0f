"""Running the API under uvicorn: in the foreground (``swarm serve``) or on a background thread
(tests and benchmarks, which need a real socket for SSE, schemathesis and a browser)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from swarm.api.app import create_app
from swarm.config import Settings


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    # access_log off: our RequestLog middleware logs requests without query strings (no keys).
    # ws="none": no websockets here, and not importing them avoids their deprecation warnings.
    # A short graceful-shutdown timeout: SSE streams would otherwise hold shutdown open.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, ws="none",
                          lifespan="on", timeout_graceful_shutdown=2, timeout_keep_alive=30)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    uvicorn.Server(uvicorn_config(create_app(settings), host, port, log_level)).run()


class BackgroundServer:
    """An app served on a free 127.0.0.1 port from a daemon thread.

    >>> with BackgroundServer(create_app(settings)) as srv:  # doctest: +SKIP
    ...     httpx.get(f"{srv.url}/healthz")
    """

    def __init__(self, app: FastAPI, startup_timeout: float = 30.0) -> None:
        self.app = app
        self.port = 0
        self._timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        # Bind first so the port is known before the thread starts (no race for it). An explicit
        # IPPROTO_TCP makes asyncio set TCP_NODELAY (else ~40 ms Nagle stalls per response).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(self.app, "127.0.0.1", self.port, "warning"))
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"swarm-api-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("API server did not start (see the log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._server = None
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
