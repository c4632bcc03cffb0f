"""An ASGI app served by uvicorn on a free 127.0.0.1 port from a daemon thread.

Used for the built-in simulated model (embedded mode, tests) and the API server in tests.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn


class ThreadedServer:
    """Subclasses say how to configure uvicorn for a port (:meth:`uvicorn_config`)."""

    #: What a start-up failure is called, and the server thread's name (``<thread_name>-<port>``).
    label = "server"
    thread_name = "swarm-server"

    def __init__(self, startup_timeout: float = 10.0, stop_timeout: float = 10.0) -> None:
        self.port = 0
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def uvicorn_config(self, port: int) -> uvicorn.Config:
        raise NotImplementedError

    def start(self) -> Self:
        # Bind here so the port is known before the thread starts (no race for it). An explicit
        # IPPROTO_TCP makes asyncio set TCP_NODELAY; without it every kept-alive response waits
        # on Nagle's algorithm and the client's delayed ACK (docs/benchmarks.md, "Measured design
        # choices").
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(self.uvicorn_config(self.port))
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"{self.thread_name}-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} did not start (see the log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._stop_timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
