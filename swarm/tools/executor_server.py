"""``swarm executor``'s server: runs the python calls that workers send (:mod:`swarm.tools.executor`
holds the wire format and the worker's side).

Kept apart from the client so that the python tool, which calls the client, and this server, which
runs the python tool, import each other in one direction only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import logging
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from swarm.config import Settings
from swarm.tools.base import ToolContext
from swarm.tools.executor import (
    DRAIN_BYTES,
    LOOPBACK,
    PATH,
    SLOT_WAIT_SECONDS,
    BadMessage,
    add_bytes,
    body_limit,
    files_of,
    members,
    new_spool,
    safe_relpath,
    spool,
    write_file,
)
from swarm.tools.python_exec import PythonTool

log = logging.getLogger(__name__)


class ExecutorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        # Never forward to another executor: this process runs the code itself, in its sandbox.
        self.settings = settings.model_copy(update={"python_executor_url": ""})
        self.token = settings.executor_token.get_secret_value().encode()
        if not self.token and address[0] not in LOOPBACK:
            raise ValueError("set SWARM_EXECUTOR_TOKEN: `swarm executor` serves other hosts only with a token")
        self.limit = body_limit(settings)
        self.slots = threading.BoundedSemaphore(settings.tool_concurrency)
        super().__init__(address, _Handler)

    def authorized(self, header: str) -> bool:
        if not self.token:
            return True
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    def run_call(self, body: IO[bytes], ids: tuple[str, str, str]) -> IO[bytes]:
        """Unpack the request into a fresh directory, run the code, pack the answer; the directory goes."""
        tmp = Path(tempfile.mkdtemp(prefix="swarm-exec-"))
        try:
            code: str | None = None
            sent: dict[str, str] = {}
            with tarfile.open(fileobj=body, mode="r:") as tar:
                for name, data in members(tar, self.limit):
                    if name == "code":
                        code = data.decode("utf-8", "replace")
                    elif (rel := safe_relpath(name)) is not None and write_file(tmp, rel, data):
                        sent[rel] = hashlib.sha256(data).hexdigest()
            if code is None:
                raise BadMessage("no code member")
            run_id, agent_id, step_id = ids
            ctx = ToolContext(run_id=run_id, agent_id=agent_id, step_id=step_id, workspace=tmp, settings=self.settings)
            result = PythonTool().run({"code": code}, ctx)
            log.info(
                "python call %s: %s",
                step_id or "-",
                result.meta or result.content[:200],
                extra={"run_id": run_id, "agent_id": agent_id, "step_id": step_id},
            )
            answer = new_spool()
            try:
                with tarfile.open(fileobj=answer, mode="w", format=tarfile.PAX_FORMAT) as out:
                    add_bytes(
                        out,
                        "result.json",
                        json.dumps(
                            {"content": result.content, "is_error": result.is_error, "meta": result.meta}, default=str
                        ).encode(),
                    )
                    for rel, p in files_of(tmp):
                        data = p.read_bytes()
                        if sent.get(rel) != hashlib.sha256(data).hexdigest():
                            add_bytes(out, f"files/{rel}", data)
                answer.seek(0)
            except BaseException:
                answer.close()
                raise
            return answer
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class _Handler(BaseHTTPRequestHandler):
    server: ExecutorServer
    timeout = 120  # a client that stalls mid-request loses its connection
    server_version = "swarm-executor"

    def do_GET(self) -> None:
        if self.path == "/healthz":  # no token: for container healthchecks
            self._reply(200, b"ok\n")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        srv = self.server
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if self.path != PATH:
            return self._refuse(404, "not found", length)
        if not srv.authorized(self.headers.get("Authorization", "")):
            return self._refuse(401, "bad or missing bearer token", length)
        if length < 0:
            return self._refuse(411, "Content-Length required", length)
        if length > srv.limit:
            return self._refuse(413, f"{length} bytes > {srv.limit}", length)
        if not srv.slots.acquire(timeout=SLOT_WAIT_SECONDS):
            return self._refuse(503, "busy", length)
        try:
            body = spool(self._chunks(length), length)
            ids = tuple(self.headers.get(h, "")[:64] for h in ("X-Swarm-Run", "X-Swarm-Agent", "X-Swarm-Step"))
            with body:
                answer = srv.run_call(body, (ids[0], ids[1], ids[2]))
        except (tarfile.TarError, BadMessage, UnicodeError) as exc:
            return self._reply(400, f"bad request: {exc}\n".encode())
        except Exception:
            log.exception("python call failed in the executor")
            return self._reply(500, b"the executor failed to run the call\n")
        finally:
            srv.slots.release()
        with answer:
            size = answer.seek(0, io.SEEK_END)
            answer.seek(0)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(answer, self.wfile)

    def _chunks(self, length: int) -> Iterator[bytes]:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                raise BadMessage("the request body ended early")
            length -= len(chunk)
            yield chunk

    def _refuse(self, status: int, message: str, length: int) -> None:
        if 0 < length <= DRAIN_BYTES:
            with contextlib.suppress(OSError, BadMessage):
                for _ in self._chunks(length):
                    pass
        self._reply(status, f"{message}\n".encode())

    def _reply(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve python calls until the process is stopped."""
    server = ExecutorServer((host, port), settings)
    try:
        server.serve_forever()
    finally:
        server.server_close()
