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

import io
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

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
SLOT_WAIT_SECONDS = 10.0
DRAIN_BYTES = 1024 * 1024  # a refused request this small is read first, so the reply is not lost to a reset
_SPOOL_BYTES = 8 * 1024 * 1024


class BadMessage(ValueError):
    """A request or answer that is not what the protocol says."""


def body_limit(settings: Settings) -> int:
    """The largest request (or answer) accepted: the workspace tmpfs size plus slack."""
    return settings.python_workspace_mb * 1024 * 1024 + _SLACK_BYTES


# ------------------------------------------------------------------ tar plumbing


def files_of(root: Path) -> Iterator[tuple[str, Path]]:
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


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def safe_relpath(name: str) -> str | None:
    """The workspace path of a ``files/<path>`` member, or None if it is not a safe relative path."""
    if not name.startswith("files/"):
        return None
    rel = name[len("files/") :]
    parts = rel.split("/")
    if not rel or "\0" in rel or any(part in ("", ".", "..") for part in parts):
        return None
    return rel


def write_file(root: Path, rel: str, data: bytes) -> bool:
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


def members(tar: tarfile.TarFile, limit: int) -> Iterator[tuple[str, bytes]]:
    """(name, data) of the tar's plain-file members, bounded in size and number."""
    for n, member in enumerate(tar):
        if n > _MAX_MEMBERS:
            raise BadMessage("too many members")
        if not member.isreg():
            continue
        if member.size > limit:
            raise BadMessage(f"member {member.name!r} is too large")
        f = tar.extractfile(member)
        if f is not None:
            yield member.name, f.read()


def new_spool() -> IO[bytes]:
    """A temporary file kept in memory while small; the caller closes it."""
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)


def spool(chunks: Iterable[bytes], limit: int) -> IO[bytes]:
    """The chunks in a temporary file (in memory while small); BadMessage past *limit* bytes."""
    spool = new_spool()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            spool.close()
            raise BadMessage(f"more than {limit} bytes")
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
    with new_spool() as body:
        with tarfile.open(fileobj=body, mode="w", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "code", code.encode("utf-8", "replace"))
            for rel, p in files_of(workspace):
                tar.add(p, arcname=f"files/{rel}", recursive=False)
        size = body.tell()
        if size > limit:
            return _unavailable(
                url,
                f"the run's files ({size >> 20} MiB) exceed what it accepts "
                f"(SWARM_PYTHON_WORKSPACE_MB={s.python_workspace_mb})",
            )
        body.seek(0)
        headers = {
            "Content-Type": "application/x-tar",
            "Content-Length": str(size),
            "X-Swarm-Run": ctx.run_id,
            "X-Swarm-Agent": ctx.agent_id,
            "X-Swarm-Step": ctx.step_id,
        }
        if token := s.executor_token.get_secret_value():
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(float(s.python_timeout) + _CLIENT_SLACK_SECONDS, connect=10.0)
        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("POST", url, content=iter(lambda: body.read(65536), b""), headers=headers) as resp,
            ):
                if resp.status_code != 200:
                    detail = next(resp.iter_bytes(), b"")[:300].decode("utf-8", "replace").strip()
                    return _unavailable(url, _status_reason(resp.status_code, detail))
                declared = int(resp.headers.get("Content-Length") or 0)
                if declared > limit:
                    return _unavailable(url, f"its answer is too large ({declared} bytes)")
                answer = spool(resp.iter_bytes(), limit)
        except httpx.TimeoutException as exc:
            return _unavailable(url, f"no answer within {timeout.read:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _unavailable(url, f"{type(exc).__name__}: {exc}")
        except BadMessage as exc:
            return _unavailable(url, f"its answer is too large ({exc})")
    try:
        with answer, tarfile.open(fileobj=answer, mode="r:") as tar:
            return _read_answer(tar, workspace, limit)
    except (tarfile.TarError, BadMessage, ValueError, OSError) as exc:
        return _unavailable(url, f"it sent a malformed answer ({exc})")


def _read_answer(tar: tarfile.TarFile, workspace: Path, limit: int) -> ToolResult:
    result: ToolResult | None = None
    for name, data in members(tar, limit):
        if name == "result.json":
            raw = json.loads(data)
            if not (
                isinstance(raw, dict)
                and isinstance(raw.get("content"), str)
                and isinstance(raw.get("is_error"), bool)
                and isinstance(raw.get("meta", {}), dict)
            ):
                raise BadMessage("result.json is not a tool result")
            result = ToolResult(raw["content"], raw["is_error"], raw.get("meta", {}))
        elif (rel := safe_relpath(name)) is not None and not write_file(workspace, rel, data):
            log.warning("python executor returned %r, which cannot be written to the workspace", rel)
    if result is None:
        raise BadMessage("no result.json")
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
    return ToolResult(
        f"the python executor is unavailable: {why}. The code may not have run; try again later.",
        is_error=True,
        meta={"executor_error": why},
    )


def python_report(settings: Settings) -> dict[str, object]:
    """Where this process's python tool calls run, for ``swarm worker --check``: in the executor
    when one is set (this machine needs no sandbox then), else :func:`isolation_report` here."""
    if settings.python_executor_url:
        return {
            "python_isolation": "executor",
            "available": True,
            "network": False,
            "detail": f"python tool code runs in the executor at {settings.python_executor_url} "
            "(its own sandbox, without this worker's credentials)",
        }
    from swarm.tools.sandbox_spec import isolation_report

    return isolation_report(settings.python_isolation, settings.python_network)
