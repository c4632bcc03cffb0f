"""The ``python`` tool: run model-written code in a fresh, isolated, resource-limited process.

Where and how the code runs (a bubblewrap sandbox, a PID namespace per call, limits fixed when the
sandbox starts) is :mod:`swarm.tools.sandbox`; this module is the tool: arguments, output capture
and what the model is told.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import math
import os
import select
import selectors
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

from pydantic import Field

from swarm.config import Settings
from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.tools.arguments import Arguments, ArgumentsTool, NonBlank
from swarm.tools.base import ToolContext, ToolResult
from swarm.tools.executor import run_remote
from swarm.tools.sandbox import HARD_TIMEOUT_EXIT, SETUP_FAILED_EXIT, SOFT_TIMEOUT_EXIT, SandboxChild, server_for
from swarm.tools.sandbox_spec import Limits, SandboxSpec, probe

log = logging.getLogger(__name__)

_FSIZE_BYTES = 64 * 1024 * 1024
_NOFILE = 256
#: Room left in the result for labels and notes so the whole result stays under the cap.
_RESERVE_CHARS = 300
#: With isolation the call's PID 1 enforces the time limit and copies the workspace back; the
#: requester only kills the call if that has not happened this much later.
_ISOLATED_GRACE = 5.0


def _spec(settings: Settings) -> SandboxSpec:
    timeout = float(settings.python_timeout)
    isolate = settings.python_isolation != "off"
    return SandboxSpec(
        isolate=isolate,
        network=settings.python_network,
        limits=Limits(
            memory=settings.python_memory_mb * 1024 * 1024,
            cpu=math.ceil(timeout) + 1,
            fsize=_FSIZE_BYTES,
            nofile=_NOFILE,
            nproc=settings.python_max_processes,
        ),
        soft_timeout=_soft_timeout(timeout),
        hard_timeout=timeout,
        work_bytes=settings.python_workspace_mb * 1024 * 1024,
        tmp_bytes=settings.python_tmp_mb * 1024 * 1024,
    )


def _soft_timeout(timeout: float) -> float:
    return max(timeout - 1.0, timeout * 0.8)


class _Capture:
    """Keeps the head and the tail of a stream (``keep`` chars each) and counts the rest."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.total = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        self.total += len(text)
        room = self._keep - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len - len(self._tail[0]) >= self._keep:
                self._tail_len -= len(self._tail.popleft())

    def render(self, budget: int) -> str:
        head, tail = "".join(self._head), "".join(self._tail)
        if self.total <= budget:
            return head + tail
        first = budget // 2
        last = budget - first
        # The tail buffer holds at least ``keep >= last`` chars whenever anything was dropped,
        # and otherwise head + tail is the whole stream, so this slice is always the true end.
        end = (head + tail)[-last:] if last else ""
        omitted = self.total - first - last
        return f"{head[:first]}\n[output truncated: {omitted} chars omitted]\n{end}"


def _split_budget(out: _Capture, err: _Capture, budget: int) -> tuple[int, int]:
    if out.total + err.total <= budget:
        return out.total, err.total
    # stderr usually holds the traceback the model needs, so it may take half even when
    # stdout is flooding.
    err_budget = min(err.total, max(budget // 2, budget - out.total))
    return budget - err_budget, err_budget


def _exchange(child: SandboxChild, code: bytes, deadline: float, out: _Capture, err: _Capture) -> bool:
    """Feed stdin, drain stdout/stderr until the call is reaped; False if the deadline hit.

    Background processes the code started are ended by the server (a PID namespace per call, or
    the child's session without isolation) before it reports the exit; one that still holds the
    pipes open only has a second to let go.
    """
    view, pos = memoryview(code), 0
    exited = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(child.stdin, selectors.EVENT_WRITE)
            sel.register(child.stdout, selectors.EVENT_READ, out)
            sel.register(child.stderr, selectors.EVENT_READ, err)
            if child.exit_fd >= 0:
                sel.register(child.exit_fd, selectors.EVENT_READ)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # After the exit, the deadline only bounds draining the pipes.
                    return exited
                for key, _ in sel.select(remaining):
                    if key.fd == child.stdin:
                        try:
                            pos += os.write(key.fd, view[pos : pos + select.PIPE_BUF])
                        except BrokenPipeError:
                            pos = len(view)
                        if pos >= len(view):
                            sel.unregister(child.stdin)
                            child.close_stdin()
                    elif key.fd == child.exit_fd:
                        exited = True
                        sel.unregister(child.exit_fd)
                        deadline = min(deadline, time.monotonic() + 1.0)
                    else:
                        data = os.read(key.fd, 65536)
                        if data:
                            key.data.feed(data)
                        else:
                            sel.unregister(key.fd)
        if not exited:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        return False


def _signal_note(rc: int, memory_mb: int, cpu: int) -> str:
    sig = -rc
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig == signal.SIGXCPU:
        return f"killed: the CPU time limit ({cpu} s) was exceeded"
    if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
        return (
            f"killed by {name} (often a sign of exceeding the {memory_mb} MiB memory "
            "limit; use less memory, e.g. process data in chunks)"
        )
    return f"killed by {name}"


class PythonArgs(Arguments):
    code: NonBlank = Field(description="Python 3 source to run.")

    problems = {"code": "argument 'code' is required and must be a non-empty string of Python source"}


class PythonTool(ArgumentsTool[PythonArgs]):
    """Runs Python 3 code in a fresh, isolated process in the run's workspace."""

    name = "python"
    description = (
        "Run Python 3 code in a fresh process (nothing is kept in memory between calls). The "
        "run's files are in the working directory; files you write there are kept for later "
        "calls and other agents. Only what the code prints (stdout/stderr) comes back, so "
        "print() every value you want to see. Time, memory and output size are limited; "
        "background processes are stopped when the code finishes."
    )
    arguments = PythonArgs
    uses_workspace = True

    def call(self, args: PythonArgs, ctx: ToolContext) -> ToolResult:
        code = args.code
        settings = ctx.settings
        if settings.python_executor_url:  # model code runs in `swarm executor`, not next to our credentials
            return run_remote(code, ctx)
        spec = _spec(settings)
        if spec.isolate and (why := probe(spec.network)) is not None:
            log.error("python tool refused: %s", why)
            return ToolResult(f"the python tool is unavailable on this worker: {why}", is_error=True)
        timeout = float(settings.python_timeout)
        workspace = Path(ctx.workspace)
        workspace.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            child = server_for(spec).launch(workspace)
        except OSError as e:
            return ToolResult(f"could not start the Python interpreter: {e}", is_error=True)
        out, err = _Capture(MAX_TOOL_OUTPUT_CHARS), _Capture(MAX_TOOL_OUTPUT_CHARS)
        deadline = started + timeout + (_ISOLATED_GRACE if spec.isolate else 0.0)
        try:
            finished = _exchange(child, code.encode("utf-8", "replace"), deadline, out, err)
        finally:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            child.close()
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        rc = _as_returncode(child.returncode)
        elapsed = time.monotonic() - started
        timed_out = (
            not finished
            or child.returncode == HARD_TIMEOUT_EXIT
            or (rc == SOFT_TIMEOUT_EXIT and elapsed >= spec.soft_timeout)
        )
        cpu = spec.limits.cpu

        out_budget, err_budget = _split_budget(out, err, MAX_TOOL_OUTPUT_CHARS - _RESERVE_CHARS)
        parts = []
        if out.total:
            parts.append(out.render(out_budget).rstrip("\n"))
        if err.total:
            parts.append("[stderr]\n" + err.render(err_budget).rstrip("\n"))
        if timed_out:
            parts.append(
                f"timed out after {timeout:g} s (the process was killed; make the code faster or do less per call)"
            )
        elif rc is not None and rc < 0:
            parts.append(_signal_note(rc, settings.python_memory_mb, cpu))
        elif rc == SETUP_FAILED_EXIT and not out.total and not err.total:
            parts.append("the sandbox could not run the code (see the worker's log)")
        elif rc:
            if "MemoryError" in err.render(err_budget):
                parts.append(f"the code ran out of memory (limit {settings.python_memory_mb} MiB)")
            parts.append(f"exit code {rc}")
        if not parts:
            parts.append("(no output; use print() to show results)")
        return ToolResult(
            "\n".join(parts),
            is_error=timed_out or rc != 0,
            meta={"exit_code": rc, "timed_out": timed_out, "duration_ms": round(elapsed * 1000)},
        )


def _as_returncode(code: int | None) -> int | None:
    """The server reports ``128 + N`` for a process killed by signal N; Popen's spelling is ``-N``."""
    if code is not None and 128 < code < 128 + 65:
        return 128 - code
    return code
