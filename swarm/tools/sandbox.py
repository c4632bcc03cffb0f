"""Where model-written code runs: a fork server inside bubblewrap, isolated from swarm itself.

The ``python`` tool runs code a model wrote, and a model can be steered by anything it reads. So by
default (``SWARM_PYTHON_ISOLATION=bwrap``) that code runs in a bubblewrap sandbox that has

* no network (``SWARM_PYTHON_NETWORK=true`` shares the host's, database and broker included);
* a read-only view of the system and of the Python installation only — not swarm's home, its
  database file, its working directory (a ``.env``) or any other run's workspace;
* its own PID namespace per call, so ``/proc`` shows no other process and every process the code
  started is killed when the call ends;
* a size-capped private tmpfs as its workspace and another as ``/tmp``;
* a user id of its own, no capabilities, ``no_new_privs``, and limits on memory, CPU, file size,
  open files and processes.

Everything is fixed when the server starts (:mod:`swarm.tools.sandbox_server` says how a call runs);
a request carries only file descriptors. Where bubblewrap is missing or the kernel refuses it,
python calls fail with a tool error that says so, ``swarm doctor`` and ``swarm worker --check`` say
why, and only ``SWARM_PYTHON_ISOLATION=off`` (reported in the logs and by ``/v1/info``) runs code
without isolation.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import asdict
from pathlib import Path

from swarm.retry import RetryPolicy
from swarm.tools import sandbox_boot as _boot_module
from swarm.tools import sandbox_copy as _copy_module
from swarm.tools import sandbox_server as _server_module
from swarm.tools.sandbox_spec import (
    FLAGS,
    SandboxSpec,
    SandboxUnavailable,
    bwrap_argv,
    hidden_roots,
    interpreter,
    site_dirs,
)

log = logging.getLogger(__name__)

_INT_SIZE = 4
#: How long a started server may take to fork a call before it is presumed wedged and replaced.
_START_TIMEOUT = 30.0
#: A call the server could not take (it died, or hung past _START_TIMEOUT) is tried once more on
#: a fresh server, at once.
LAUNCH_RETRY = RetryPolicy(attempts=2, base=0.0, cap=0.0)
HARD_TIMEOUT_EXIT = _server_module.HARD_TIMEOUT_EXIT
SOFT_TIMEOUT_EXIT = _boot_module.SOFT_TIMEOUT_EXIT
SETUP_FAILED_EXIT = _server_module.SETUP_FAILED_EXIT

#: Read by the interpreter at start-up, so the same for every call; HOME is set per call.
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    # Numeric libraries start one thread (and arena) per core, which would eat the
    # address-space limit before any user code runs.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
    "MPLBACKEND": "Agg",
}


def _server_config(spec: SandboxSpec) -> str:
    as_root = os.geteuid() == 0
    return json.dumps(
        {
            "isolate": spec.isolate,
            "root": as_root,
            "limits": asdict(spec.limits),
            "relocate": hidden_roots(),
            "soft_timeout": spec.soft_timeout,
            "hard_timeout": spec.hard_timeout,
            "work_bytes": spec.work_bytes,
            "tmp_bytes": spec.tmp_bytes,
            "site_paths": list(site_dirs(not spec.isolate)),
            "env": CHILD_ENV,
            # Per-call user ids of this process's server: an unused range far above real accounts.
            "uid_base": 1_000_000_000 + (os.getpid() % 100_000) * 1000,
            "uid_span": 1000,
        }
    )


#: The standard-library-only modules the server imports from swarm, in the order their sources are
#: prepended to its own (swarm itself is not importable in the sandbox).
_PARTS = (_boot_module, _copy_module)
_FUTURE = "from __future__ import annotations\n"


@functools.cache
def _source() -> str:
    """The server's program: the sources of its parts, then its own without its imports of them."""
    server = Path(_server_module.__file__).read_text("utf-8")
    sources = []
    for i, part in enumerate(_PARTS):
        text = Path(str(part.__file__)).read_text("utf-8")
        line = next(x for x in server.splitlines() if x.startswith(f"from {part.__name__} import "))
        server = server.replace(line, "")
        sources.append(text if i == 0 else text.replace(_FUTURE, ""))
    assert _FUTURE in server
    server = server.replace(_FUTURE, "")
    return "\n".join([*sources, server.replace('if __name__ == "__main__":', "if True:")])


def server_command(spec: SandboxSpec, control_fd: int) -> list[str]:
    cmd = [interpreter(), *FLAGS, "-c", _source(), _server_config(spec), str(control_fd)]
    if not spec.isolate:
        return cmd
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: apt-get install "
            "bubblewrap) or set SWARM_PYTHON_ISOLATION=off to run model code without "
            "isolation (unsafe for untrusted models)"
        )
    return [*bwrap_argv(bwrap, spec, os.geteuid() == 0), "--", *cmd]


class SandboxChild:
    """One call's process, as seen from the requester. ``exit_fd`` turns readable once it was reaped."""

    def __init__(self, pid: int, pidfd: int, stdin: int, stdout: int, stderr: int, chan: socket.socket) -> None:
        self.pid, self._pidfd = pid, pidfd
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._chan = chan
        self.returncode: int | None = None
        self._done = False

    @property
    def exit_fd(self) -> int:
        return self._chan.fileno()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the call ended, like ``Popen.wait`` (raises ``subprocess.TimeoutExpired``).
        None if the server died before reporting it."""
        if not self._done:
            # poll, not select: a busy worker process may hold descriptors past FD_SETSIZE (1024).
            poller = select.poll()
            poller.register(self._chan, select.POLLIN)
            if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
                raise subprocess.TimeoutExpired("python", timeout or 0.0)
            data = self._chan.recv(_INT_SIZE, socket.MSG_WAITALL)
            self.returncode = int.from_bytes(data, "big", signed=True) if len(data) == _INT_SIZE else None
            self._done = True
        return self.returncode

    def kill(self) -> None:
        """Kill the call: with isolation its whole PID namespace goes with it."""
        if self._pidfd >= 0 and not self._done:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def close_stdin(self) -> None:
        if self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def close(self) -> None:
        self._chan.close()
        for fd in (self.stdin, self.stdout, self.stderr, self._pidfd):
            if fd >= 0:
                os.close(fd)
        self.stdin = self.stdout = self.stderr = self._pidfd = -1


def _check_started(msg: bytes, fds: list[int]) -> None:
    if len(msg) != _INT_SIZE or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ConnectionResetError("the python sandbox closed the call's channel")


class SandboxServer:
    """Starts the server lazily (once per process and spec, again after a fork or a crash)."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._owner = 0
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)
        os.register_at_fork(after_in_child=self._forget)

    def launch(self, workspace: Path) -> SandboxChild:
        """Start one call with ``workspace`` as its files; retried (LAUNCH_RETRY) on a fresh server."""

        def once() -> SandboxChild:
            control = self._ensure_started()  # raises SandboxUnavailable, never retried
            try:
                return self._request(control, workspace)
            except ConnectionError:  # BrokenPipeError included
                self._stop()
                raise

        try:
            return LAUNCH_RETRY.call(once, (ConnectionError,))
        except ConnectionError as e:
            raise SandboxUnavailable(f"the python sandbox is unreachable: {e}") from e

    def _request(self, control: socket.socket, workspace: Path) -> SandboxChild:
        pipes = [os.pipe() for _ in range(3)]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        mine, chan = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ws = -1
        try:
            ws = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            socket.send_fds(control, [b"run"], [*theirs, ws, chan.fileno()])
            mine.settimeout(_START_TIMEOUT)
            try:
                msg, fds, _, _ = socket.recv_fds(mine, _INT_SIZE, 1)
            except TimeoutError as e:
                raise ConnectionResetError("the python sandbox did not start the call") from e
            mine.settimeout(None)
            _check_started(msg, fds)
        except BaseException:
            mine.close()
            for fd in ours:
                os.close(fd)
            raise
        finally:
            chan.close()
            if ws >= 0:
                os.close(ws)
            for fd in theirs:
                os.close(fd)
        for fd in ours:
            os.set_inheritable(fd, False)
        return SandboxChild(int.from_bytes(msg, "big", signed=True), fds[0], ours[0], ours[1], ours[2], mine)

    def _forget(self) -> None:
        """In a forked child (a prefork worker): the server belongs to the parent. Drop our end of
        its control socket, so it still exits with the parent, and start afresh if needed."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.close()
        self._lock = threading.Lock()
        self._owner, self._proc, self._control = 0, None, None

    def _ensure_started(self) -> socket.socket:
        with self._lock:
            if self._proc is None or self._control is None or self._proc.poll() is not None:
                self._start()
            assert self._control is not None
            return self._control

    def _start(self) -> None:
        self._stop_locked()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cmd = server_command(self.spec, theirs.fileno())
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env={},
            )
        except OSError as e:
            ours.close()
            if isinstance(e, SandboxUnavailable):
                raise
            raise SandboxUnavailable(f"could not start the python sandbox: {e}") from e
        finally:
            theirs.close()
        ours.set_inheritable(False)
        self._owner, self._control = os.getpid(), ours
        if self.spec.isolate:
            log.debug("python sandbox server %d started", self._proc.pid)
        else:
            log.warning(
                "python tool code runs WITHOUT isolation (SWARM_PYTHON_ISOLATION=off): it can reach "
                "everything this process can; server %d",
                self._proc.pid,
            )

    def _stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._proc is not None and self._owner == os.getpid():
            if self._control is not None:
                self._control.close()  # the server sees EOF and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        self._proc, self._control, self._owner = None, None, 0

    @property
    def pid(self) -> int | None:
        """The running server's pid (None before the first call)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        self._stop()


_servers: dict[SandboxSpec, SandboxServer] = {}
_servers_lock = threading.Lock()


def server_for(spec: SandboxSpec) -> SandboxServer:
    with _servers_lock:
        server = _servers.get(spec)
        if server is None:
            server = _servers[spec] = SandboxServer(spec)
        return server


def running_server_pids() -> list[int]:
    """This process's running sandbox servers (benchmarks measure their CPU)."""
    with _servers_lock:
        return [pid for s in _servers.values() if (pid := s.pid) is not None]
