"""``swarm executor``: python tool calls over HTTP, run where no database, broker or model key is.

A worker with ``SWARM_PYTHON_EXECUTOR_URL`` set sends each python call here instead of running it
itself. One request per call: ``POST /v1/python`` with ``Authorization: Bearer <SWARM_EXECUTOR_TOKEN>``
and an uncompressed tar body: a member ``code`` (UTF-8 source), then ``files/<path>`` for each of the
run's files. The answer (200) is a tar too: ``result.json`` (``content``, ``is_error``, ``meta``), then
``files/<path>`` for each file the code created or changed. Both ends bound what they read (the
request by its Content-Length, checked before reading; the answer while it arrives) and write only
plain files strictly inside their workspace. The executor runs each call with its own settings, so
its own bubblewrap sandbox and limits apply.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx

from swarm.config import Settings
from swarm.tools.base import ToolContext, ToolResult

log = logging.getLogger(__name__)

PATH = "/v1/python"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_SLACK_BYTES = 16 * 1024 * 1024  # tar headers, the code and result.json on top of the files
#: Members a message may hold: far more files than a workspace tmpfs of reasonable size holds.
_MAX_MEMBERS = 100_000
_CLIENT_SLACK_SECONDS = 30.0  # the executor's grace, a wait for a free slot, the transfer
_SLOT_WAIT_SECONDS = 10.0
_DRAIN_BYTES = 1024 * 1024  # a refused request this small is read first, so the reply is not lost to a reset
_SPOOL_BYTES = 8 * 1024 * 1024


class _BadMessage(ValueError):
    """A request or answer that is not what the protocol says."""


def body_limit(settings: Settings) -> int:
    """The largest request (or answer) accepted: the workspace tmpfs size plus slack."""
    return settings.python_workspace_mb * 1024 * 1024 + _SLACK_BYTES


# ------------------------------------------------------------------ tar plumbing


def _files_of(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of the plain files under *root*. Every one is sent: what the run may
    keep is decided once, by the worker's workspace, which tells the model what it did not keep
    (the request and answer are bounded by :func:`body_limit` as a whole)."""
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # not storable anyway (Workspace.changed skips it)
            continue
        yield rel, p


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _rel(name: str) -> str | None:
    """The workspace path of a ``files/<path>`` member, or None if it is not a safe relative path."""
    if not name.startswith("files/"):
        return None
    rel = name[len("files/"):]
    parts = rel.split("/")
    if not rel or "\0" in rel or any(part in ("", ".", "..") for part in parts):
        return None
    return rel


def _write(root: Path, rel: str, data: bytes) -> bool:
    """Write a plain file under *root*, never through a symlink or over a directory."""
    cur = root
    for part in rel.split("/")[:-1]:
        cur = cur / part
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            return False
        if not cur.exists():
            cur.mkdir()
    target = cur / rel.rsplit("/", 1)[-1]
    if target.is_symlink() or target.is_dir():
        return False
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _members(tar: tarfile.TarFile, limit: int) -> Iterator[tuple[str, bytes]]:
    """(name, data) of the tar's plain-file members, bounded in size and number."""
    for n, member in enumerate(tar):
        if n > _MAX_MEMBERS:
            raise _BadMessage("too many members")
        if not member.isreg():
            continue
        if member.size > limit:
            raise _BadMessage(f"member {member.name!r} is too large")
        f = tar.extractfile(member)
        if f is not None:
            yield member.name, f.read()


def _new_spool() -> IO[bytes]:
    """A temporary file kept in memory while small; the caller closes it."""
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)


def _spool(chunks: Iterable[bytes], limit: int) -> IO[bytes]:
    """The chunks in a temporary file (in memory while small); _BadMessage past *limit* bytes."""
    spool = _new_spool()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            spool.close()
            raise _BadMessage(f"more than {limit} bytes")
        spool.write(chunk)
    spool.seek(0)
    return spool


# ------------------------------------------------------------------ the client (workers)


def run_remote(code: str, ctx: ToolContext) -> ToolResult:
    """Run one python call on the executor at ``SWARM_PYTHON_EXECUTOR_URL``; its new or changed files
    land in ``ctx.workspace``. Any failure of the executor is a tool error, never an exception."""
    s = ctx.settings
    url = s.python_executor_url.rstrip("/") + PATH
    workspace = Path(ctx.workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    limit = body_limit(s)
    with _new_spool() as body:
        with tarfile.open(fileobj=body, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "code", code.encode("utf-8", "replace"))
            for rel, p in _files_of(workspace):
                tar.add(p, arcname=f"files/{rel}", recursive=False)
        size = body.tell()
        if size > limit:
            return _unavailable(url, f"the run's files ({size >> 20} MiB) exceed what it accepts "
                                     f"(SWARM_PYTHON_WORKSPACE_MB={s.python_workspace_mb})")
        body.seek(0)
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size),
                   "X-Swarm-Run": ctx.run_id, "X-Swarm-Agent": ctx.agent_id, "X-Swarm-Step": ctx.step_id}
        if token := s.executor_token.get_secret_value():
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(float(s.python_timeout) + _CLIENT_SLACK_SECONDS, connect=10.0)
        try:
            with httpx.Client(timeout=timeout) as client, client.stream(
                    "POST", url, content=iter(lambda: body.read(65536), b""), headers=headers) as resp:
                if resp.status_code != 200:
                    detail = next(resp.iter_bytes(), b"")[:300].decode("utf-8", "replace").strip()
                    return _unavailable(url, _status_reason(resp.status_code, detail))
                declared = int(resp.headers.get("Content-Length") or 0)
                if declared > limit:
                    return _unavailable(url, f"its answer is too large ({declared} bytes)")
                answer = _spool(resp.iter_bytes(), limit)
        except httpx.TimeoutException as exc:
            return _unavailable(url, f"no answer within {timeout.read:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _unavailable(url, f"{type(exc).__name__}: {exc}")
        except _BadMessage as exc:
            return _unavailable(url, f"its answer is too large ({exc})")
    try:
        with answer, tarfile.open(fileobj=answer, mode="r:") as tar:
            return _read_answer(tar, workspace, limit)
    except (tarfile.TarError, _BadMessage, ValueError, OSError) as exc:
        return _unavailable(url, f"it sent a malformed answer ({exc})")


def _read_answer(tar: tarfile.TarFile, workspace: Path, limit: int) -> ToolResult:
    result: ToolResult | None = None
    for name, data in _members(tar, limit):
        if name == "result.json":
            raw = json.loads(data)
            if not (isinstance(raw, dict) and isinstance(raw.get("content"), str)
                    and isinstance(raw.get("is_error"), bool) and isinstance(raw.get("meta", {}), dict)):
                raise _BadMessage("result.json is not a tool result")
            result = ToolResult(raw["content"], raw["is_error"], raw.get("meta", {}))
        elif (rel := _rel(name)) is not None and not _write(workspace, rel, data):
            log.warning("python executor returned %r, which cannot be written to the workspace", rel)
    if result is None:
        raise _BadMessage("no result.json")
    return result


def _status_reason(status: int, detail: str) -> str:
    if status in (401, 403):
        return "it refused this worker's token (SWARM_EXECUTOR_TOKEN must be the same on both)"
    if status == 413:
        return f"the run's files exceed what it accepts ({detail})"
    if status == 503:
        return "it is busy (every SWARM_TOOL_CONCURRENCY slot is taken)"
    return f"HTTP {status}" + (f": {detail}" if detail else "")


def _unavailable(url: str, why: str) -> ToolResult:
    log.error("python executor %s: %s", url, why)
    return ToolResult(f"the python executor is unavailable: {why}. The code may not have run; try again later.",
                      is_error=True, meta={"executor_error": why})


def python_report(settings: Settings) -> dict[str, object]:
    """Where this process's python tool calls run, for ``swarm worker --check``: in the executor
    when one is set (this machine needs no sandbox then), else :func:`isolation_report` here."""
    if settings.python_executor_url:
        return {"python_isolation": "executor", "available": True, "network": False,
                "detail": f"python tool code runs in the executor at {settings.python_executor_url} "
                          "(its own sandbox, without this worker's credentials)"}
    from swarm.tools.sandbox_spec import isolation_report

    return isolation_report(settings.python_isolation, settings.python_network)


# ------------------------------------------------------------------ the server (`swarm executor`)


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
        from swarm.tools.python_exec import PythonTool

        tmp = Path(tempfile.mkdtemp(prefix="swarm-exec-"))
        try:
            code: str | None = None
            sent: dict[str, str] = {}
            with tarfile.open(fileobj=body, mode="r:") as tar:
                for name, data in _members(tar, self.limit):
                    if name == "code":
                        code = data.decode("utf-8", "replace")
                    elif (rel := _rel(name)) is not None and _write(tmp, rel, data):
                        sent[rel] = hashlib.sha256(data).hexdigest()
            if code is None:
                raise _BadMessage("no code member")
            result = PythonTool().run({"code": code}, ToolContext(*ids, workspace=tmp, settings=self.settings))
            log.info("python call %s: %s", ids[2] or "-", result.meta or result.content[:200])
            answer = _new_spool()
            try:
                with tarfile.open(fileobj=answer, mode="w", format=tarfile.PAX_FORMAT) as out:
                    _add_bytes(out, "result.json", json.dumps({"content": result.content, "is_error": result.is_error,
                                                               "meta": result.meta}, default=str).encode())
                    for rel, p in _files_of(tmp):
                        data = p.read_bytes()
                        if sent.get(rel) != hashlib.sha256(data).hexdigest():
                            _add_bytes(out, f"files/{rel}", data)
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
        if not srv.slots.acquire(timeout=_SLOT_WAIT_SECONDS):
            return self._refuse(503, "busy", length)
        try:
            body = _spool(self._chunks(length), length)
            ids = tuple(self.headers.get(h, "")[:64] for h in ("X-Swarm-Run", "X-Swarm-Agent", "X-Swarm-Step"))
            with body:
                answer = srv.run_call(body, (ids[0], ids[1], ids[2]))
        except (tarfile.TarError, _BadMessage, UnicodeError) as exc:
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
                raise _BadMessage("the request body ended early")
            length -= len(chunk)
            yield chunk

    def _refuse(self, status: int, message: str, length: int) -> None:
        if 0 < length <= _DRAIN_BYTES:
            with contextlib.suppress(OSError, _BadMessage):
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
