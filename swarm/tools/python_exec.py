"""The ``python`` tool: run model-written code in a fresh, resource-limited interpreter."""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import math
import os
import select
import selectors
import signal
import site
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.tools.base import ToolContext, ToolResult
from swarm.tools.forkserver import ForkedChild, ForkServer

log = logging.getLogger(__name__)

#: Exit status the bootstrap uses when its own (soft) time limit fired.
_SOFT_TIMEOUT_EXIT = 124
_FSIZE_BYTES = 64 * 1024 * 1024
_NOFILE = 256
#: Room left in the result for labels and notes so the whole result stays under the cap.
_RESERVE_CHARS = 300


def _interpreter() -> str:
    # Never "python" from PATH: a pyenv shim costs ~100 ms per spawn. realpath() resolves any
    # symlink to the real binary, except inside a venv, where the symlink is what finds
    # pyvenv.cfg (and with it the venv's packages) and costs nothing extra.
    if sys.prefix != sys.base_prefix:
        return sys.executable
    return os.path.realpath(sys.executable)


@functools.cache
def _site_paths() -> str:
    """The site-packages directories and the directories their ``.pth`` files add.

    The child runs with ``-S`` because executing ``.pth`` files (editable-install finders,
    setuptools' distutils hack, ...) can triple the interpreter's start-up time; the price is
    that packages only reachable through ``import`` lines in ``.pth`` files are not importable.
    """
    dirs: list[str] = []
    for d in site.getsitepackages():
        if not os.path.isdir(d):
            continue
        dirs.append(d)
        for pth in sorted(Path(d).glob("*.pth")):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for raw in pth.read_text("utf-8").splitlines():
                    line = raw.strip()
                    if not line or line.startswith(("#", "import ", "import\t")):
                        continue
                    extra = os.path.join(d, line)
                    if os.path.isdir(extra) and extra not in dirs:
                        dirs.append(extra)
    return os.pathsep.join(dirs)


#: Runs in the child before the user's code. Limits are set here rather than in a preexec_fn
#: because preexec_fn is unsafe in a multi-threaded parent. The user's code arrives on stdin and
#: runs in the real __main__ namespace so pickling, tracebacks and ``if __name__`` behave.
#: Only cheap modules are imported up front: ``signal`` (via enum) and traceback/linecache cost
#: ~9 ms each, hence ``_signal``, and the traceback modules only when something failed.
_BOOT = """\
def _swarm_boot(args):
    import builtins, os, resource as R, sys, _signal, _sitebuiltins
    mem, cpu, fsize, nofile = map(int, args[0:4])
    soft_timeout = float(args[4])
    site_paths = [p for p in args[5].split(os.pathsep) if p]
    sys.argv[:] = ["<code>"]
    for kind, value in ((R.RLIMIT_AS, mem), (R.RLIMIT_CPU, cpu), (R.RLIMIT_FSIZE, fsize),
                        (R.RLIMIT_NOFILE, nofile), (R.RLIMIT_CORE, 0)):
        hard = R.getrlimit(kind)[1]
        if hard != R.RLIM_INFINITY:
            value = min(value, hard)
        R.setrlimit(kind, (value, value))
    # What site.py would have provided; models do call exit().
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    builtins.help = _sitebuiltins._Helper()
    cwd = os.getcwd()
    sys.path[:] = [cwd, *sys.path, *site_paths]

    class TimeLimitExceeded(BaseException):
        pass
    TimeLimitExceeded.__qualname__, TimeLimitExceeded.__module__ = "TimeLimitExceeded", "builtins"

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"the code ran longer than the {soft_timeout:g} s time limit")

    src = sys.stdin.buffer.read().decode("utf-8", "replace")
    main = sys.modules["__main__"].__dict__
    for name in [n for n in main if not n.startswith("__")]:
        del main[name]
    status = 0
    try:
        code = compile(src, "<code>", "exec")
        _signal.signal(_signal.SIGALRM, on_alarm)
        _signal.setitimer(_signal.ITIMER_REAL, soft_timeout)
        try:
            exec(code, main)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except SystemExit:
        raise
    except BaseException as e:
        if isinstance(e, MemoryError):
            main.clear()  # free the user's objects so the traceback can be printed
        # The workspace must not shadow the modules that print the traceback.
        sys.path[:] = [p for p in sys.path if p != cwd]
        import linecache, traceback
        linecache.cache["<code>"] = (len(src), None, src.splitlines(True), "<code>")
        entries, tb = [], e.__traceback__
        while tb is not None:
            entries.append(tb)
            tb = tb.tb_next
        if isinstance(e, TimeLimitExceeded) and len(entries) > 2:
            entries[-2].tb_next = None  # hide on_alarm
        traceback.print_exception(type(e), e, entries[1] if len(entries) > 1 else None)
        status = SOFT_TIMEOUT_EXIT if isinstance(e, TimeLimitExceeded) else 1
    sys.exit(status)
""".replace("SOFT_TIMEOUT_EXIT", str(_SOFT_TIMEOUT_EXIT))
#: A fresh interpreter per call: the fallback when the fork server cannot be used.
_SPAWN_SRC = _BOOT + "\nimport sys\n_swarm_boot(sys.argv[1:])\n"
_FLAGS = ("-I", "-S", "-B")
#: Read by the interpreter at start-up, so the same for every call; HOME is set per call.
_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    # Numeric libraries start one thread (and arena) per core, which would eat the
    # address-space limit before any user code runs.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}


@functools.cache
def _fork_server() -> ForkServer:
    """This process's fork server (started on first use; a forked child starts its own)."""
    # Imported once in the server, not in every child (what the boot function imports).
    return ForkServer(_interpreter, _FLAGS, _BOOT + "\nimport resource, _sitebuiltins\n", "_swarm_boot",
                      {"PATH": os.environ.get("PATH", os.defpath), **_ENV})


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


class _Spawned:
    """A child started by subprocess (the fallback), with :class:`ForkedChild`'s interface."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdin and popen.stdout and popen.stderr
        self._popen = popen
        self.pid = popen.pid
        self.stdin, self.stdout, self.stderr = popen.stdin.fileno(), popen.stdout.fileno(), popen.stderr.fileno()
        self.exit_fd = -1
        with contextlib.suppress(AttributeError, OSError):
            self.exit_fd = os.pidfd_open(popen.pid)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self._popen.wait(timeout)

    def close_stdin(self) -> None:
        assert self._popen.stdin
        self._popen.stdin.close()

    def close(self) -> None:
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
        for stream in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if stream is not None:
                stream.close()


_Child = ForkedChild | _Spawned


def _kill_group(child: _Child) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def _exchange(child: _Child, code: bytes, deadline: float, out: _Capture, err: _Capture) -> bool:
    """Feed stdin, drain stdout/stderr until the process is done; False if the deadline hit.

    The process group is killed as soon as the main process exits (before it is reaped, so its
    pid cannot have been reused), which also ends background processes the code started. (A
    forked child's group is killed by the fork server itself, before it reaps the child.)
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
                            pos += os.write(key.fd, view[pos:pos + select.PIPE_BUF])
                        except BrokenPipeError:
                            pos = len(view)
                        if pos >= len(view):
                            sel.unregister(child.stdin)
                            child.close_stdin()
                    elif key.fd == child.exit_fd:
                        exited = True
                        sel.unregister(child.exit_fd)
                        _kill_group(child)
                        # A process that escaped the group may still hold the pipes open.
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
        return (f"killed by {name} (often a sign of exceeding the {memory_mb} MiB memory "
                "limit; use less memory, e.g. process data in chunks)")
    return f"killed by {name}"


def fork_server_pid() -> int | None:
    """This process's running fork server, if any (benchmarks measure its CPU)."""
    return _fork_server().pid if _fork_server.cache_info().currsize else None


def _start(workspace: Path, env: dict[str, str], args: list[str], fork: bool) -> _Child:
    """Fork the child from this process's fork server; start a new interpreter if that fails."""
    if fork and not _fork_server().failed:
        try:
            return _fork_server().launch(str(workspace), env, args)
        except OSError as e:
            log.warning("python fork server unavailable (%s); starting a new interpreter per call from now on", e)
    popen = subprocess.Popen([_interpreter(), *_FLAGS, "-c", _SPAWN_SRC, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workspace, env=env, bufsize=0,
                             start_new_session=True, close_fds=True)
    return _Spawned(popen)


class PythonTool:
    """Runs Python 3 code in a fresh, isolated process in the run's workspace."""

    name = "python"
    description = (
        "Run Python 3 code in a fresh process (nothing is kept in memory between calls). The "
        "run's files are in the working directory; files you write there are kept for later "
        "calls and other agents. Only what the code prints (stdout/stderr) comes back, so "
        "print() every value you want to see. Time, memory and output size are limited; "
        "background processes are stopped when the code finishes.")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python 3 source to run."}},
        "required": ["code"],
        "additionalProperties": False,
    }
    uses_workspace = True

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            return ToolResult("argument 'code' is required and must be a non-empty string of "
                              "Python source", is_error=True)
        settings = ctx.settings
        timeout = float(settings.python_timeout)
        workspace = Path(ctx.workspace)
        workspace.mkdir(parents=True, exist_ok=True)
        cpu = math.ceil(timeout) + 1
        soft = max(timeout - 1.0, timeout * 0.8)
        limits = [settings.python_memory_mb * 1024 * 1024, cpu, _FSIZE_BYTES, _NOFILE, soft]
        env = {"PATH": os.environ.get("PATH", os.defpath), **_ENV, "HOME": str(workspace)}
        boot_args = [*map(str, limits), _site_paths()]
        started = time.monotonic()
        try:
            child = _start(workspace, env, boot_args, settings.python_fork_server)
        except OSError as e:
            return ToolResult(f"could not start the Python interpreter: {e}", is_error=True)
        out, err = _Capture(MAX_TOOL_OUTPUT_CHARS), _Capture(MAX_TOOL_OUTPUT_CHARS)
        try:
            finished = _exchange(child, code.encode("utf-8", "replace"), started + timeout, out, err)
        finally:
            _kill_group(child)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            child.close()
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        rc = child.returncode
        elapsed = time.monotonic() - started
        timed_out = not finished or (rc == _SOFT_TIMEOUT_EXIT and elapsed >= soft)

        out_budget, err_budget = _split_budget(out, err,
                                               MAX_TOOL_OUTPUT_CHARS - _RESERVE_CHARS)
        parts = []
        if out.total:
            parts.append(out.render(out_budget).rstrip("\n"))
        if err.total:
            parts.append("[stderr]\n" + err.render(err_budget).rstrip("\n"))
        if timed_out:
            parts.append(f"timed out after {timeout:g} s (the process was killed; make the code "
                         "faster or do less per call)")
        elif rc is not None and rc < 0:
            parts.append(_signal_note(rc, settings.python_memory_mb, cpu))
        elif rc:
            if "MemoryError" in err.render(err_budget):
                parts.append(f"the code ran out of memory (limit {settings.python_memory_mb} "
                             "MiB)")
            parts.append(f"exit code {rc}")
        if not parts:
            parts.append("(no output; use print() to show results)")
        return ToolResult("\n".join(parts), is_error=timed_out or rc != 0,
                          meta={"exit_code": rc, "timed_out": timed_out,
                                "duration_ms": round(elapsed * 1000)})
