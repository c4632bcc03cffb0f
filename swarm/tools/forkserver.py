"""A pre-started interpreter that forks a fresh child for every ``python`` tool call.

Starting CPython costs ~10 ms of CPU even with ``-I -S``; forking an interpreter that has already
started costs ~1 ms. On a busy worker node running thousands of tool calls that difference is most
of the tool's CPU. Each child is still a new process with nothing from earlier calls: it is forked
from a server that never runs user code, gets its own session (process group), working directory,
environment and resource limits, and is reaped by the server.

Protocol (one ``AF_UNIX``/``SOCK_SEQPACKET`` connection per call, to a socket in a ``0700``
directory so only this user can reach it):

    requester → server   JSON {"cwd", "env", "args"} + three fds (stdin, stdout, stderr)
    server → requester   4 bytes: the child's pid, right after the fork
    server → requester   4 bytes: the child's exit code (``-N``: killed by signal N) once reaped

The server exits when the process that started it goes away (its lifeline pipe reaches EOF).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

_INT = struct.Struct("!i")

#: The server's main loop. Runs after the prelude (which defines the entry function) with
#: ``-I -S -B``; it must never print: its children inherit its stdio buffers.
_SERVER_SRC = """
def _forkserver(listen_fd, lifeline_fd, sock_dir, entry):
    import atexit, gc, json, os, select, shutil, signal, socket, struct, sys
    INT = struct.Struct("!i")
    # The first compile() in a process initialises parser state; done here it is shared by every
    # child instead of costing each of them ~1.5 ms of CPU.
    exec(compile("pass", "<warm-up>", "exec"), {})
    # Keep the server's objects out of the children's garbage collections: a collection touches
    # every tracked object, which would copy every page shared with the server.
    gc.collect()
    gc.freeze()
    lsock = socket.socket(fileno=listen_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    running = {}

    def child(fds, req):
        code = 1
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
            os.closerange(3, 1 << 16)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            try:
                entry(req["args"])
                code = 0
            except SystemExit as e:
                code = e.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            # What interpreter shutdown would do: join threads, run atexit, flush.
            threading = sys.modules.get("threading")
            if threading is not None:
                threading._shutdown()
            atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
        except BaseException as e:
            try:
                os.write(2, f"could not run the code: {type(e).__name__}: {e}\\n".encode())
            except BaseException:
                pass
        finally:
            os._exit(code & 0xFF)

    while True:
        ready = select.select([lsock, wake_r, lifeline_fd], [], [])[0]
        if lifeline_fd in ready:
            shutil.rmtree(sock_dir, ignore_errors=True)
            os._exit(0)
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    break
                if info is None:
                    break
                pid = info.si_pid
                # Kill what the code left running in its group while the group's id still
                # cannot be reused (the child is not reaped yet), then reap.
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                status = os.waitpid(pid, 0)[1]
                conn = running.pop(pid, None)
                if conn is not None:
                    try:
                        conn.sendall(INT.pack(os.waitstatus_to_exitcode(status)))
                    except OSError:
                        pass
                    conn.close()
        if lsock in ready:
            try:
                conn = lsock.accept()[0]
                msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                req = json.loads(msg)
            except (OSError, ValueError):
                continue
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                child(fds, req)
            for fd in fds:
                os.close(fd)
            running[pid] = conn
            try:
                conn.sendall(INT.pack(pid))
            except OSError:
                pass
"""


@dataclass
class ForkedChild:
    """A child forked by the server. ``exit_fd`` turns readable once the child was reaped."""

    pid: int
    stdin: int
    stdout: int
    stderr: int
    _conn: socket.socket
    returncode: int | None = None

    _done: bool = False

    @property
    def exit_fd(self) -> int:
        return self._conn.fileno()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the child was reaped, like ``Popen.wait`` (raises
        ``subprocess.TimeoutExpired``). None if the server died before reporting it."""
        if not self._done:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("python", timeout or 0.0)
            data = self._conn.recv(_INT.size, socket.MSG_WAITALL)
            self.returncode = _INT.unpack(data)[0] if len(data) == _INT.size else None
            self._done = True
        return self.returncode

    def close_stdin(self) -> None:
        """EOF on the child's stdin (the code was sent)."""
        if self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def close(self) -> None:
        self._conn.close()
        for fd in (self.stdin, self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)


def _check_reply(data: bytes) -> None:
    if len(data) != _INT.size:
        raise ConnectionResetError("the fork server closed the connection")


class ForkServer:
    """Starts the server lazily (once per process, again after a fork or a crash)."""

    def __init__(self, interpreter: Callable[[], str], flags: Sequence[str], prelude: str, entry: str,
                 env: Mapping[str, str]) -> None:
        self._interpreter, self._flags, self._prelude, self._entry = interpreter, list(flags), prelude, entry
        self._env = dict(env)
        self._lock = threading.Lock()
        self._pid = 0  # the process that started the server
        self._dir = ""
        self._lifeline = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self.failed = False
        atexit.register(self.close)
        os.register_at_fork(after_in_child=self._forget)

    def launch(self, cwd: str, env: Mapping[str, str], args: Sequence[str]) -> ForkedChild:
        """Fork a child that runs ``entry(args)`` in ``cwd`` with exactly ``env``.

        Raises OSError when the server cannot be started or reached twice in a row; from then on
        :attr:`failed` is set and callers should use another way to run the code."""
        for attempt in (1, 2):
            try:
                return self._request(self._ensure_started(), cwd, env, args)
            except (ConnectionError, FileNotFoundError) as e:
                # The server died (killed, OOM). Start a new one once; then give up.
                self._stop()
                if attempt == 2:
                    self.failed = True
                    raise OSError(f"the python fork server is unreachable: {e}") from e
            except OSError:
                self.failed = True  # it cannot even be started here
                raise
        raise AssertionError("unreachable")

    def _request(self, path: str, cwd: str, env: Mapping[str, str], args: Sequence[str]) -> ForkedChild:
        pipes = [os.pipe() for _ in range(3)]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            conn.connect(path)
            socket.send_fds(conn, [json.dumps({"cwd": cwd, "env": dict(env), "args": list(args)}).encode()],
                            theirs)
            data = conn.recv(_INT.size, socket.MSG_WAITALL)
            _check_reply(data)
        except BaseException:
            conn.close()
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        for fd in ours:
            os.set_inheritable(fd, False)
        return ForkedChild(_INT.unpack(data)[0], ours[0], ours[1], ours[2], conn)

    def _forget(self) -> None:
        """In a forked child (a prefork worker): the server belongs to the parent. Drop our copy of
        its lifeline, so the server still exits with the parent, and start afresh if needed."""
        if self._lifeline >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._pid, self._proc, self._lifeline, self._dir = 0, None, -1, ""

    def _ensure_started(self) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return os.path.join(self._dir, "s")

    def _start(self) -> None:
        self._stop_locked()
        sock_dir = tempfile.mkdtemp(prefix="swarm-pyfork-")  # 0700: only this user can connect
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        life_r, life_w = os.pipe()
        try:
            listener.bind(os.path.join(sock_dir, "s"))
            listener.listen(128)
            src = (f"{self._prelude}\n{_SERVER_SRC}\n"
                   f"_forkserver({listener.fileno()}, {life_r}, {sock_dir!r}, {self._entry})\n")
            self._proc = subprocess.Popen([self._interpreter(), *self._flags, "-c", src], cwd=sock_dir, env=self._env,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, pass_fds=(listener.fileno(), life_r),
                                          start_new_session=True)
        except OSError as e:
            os.close(life_w)
            shutil.rmtree(sock_dir, ignore_errors=True)
            raise OSError(f"could not start the python fork server: {e}") from e
        finally:
            listener.close()
            os.close(life_r)
        os.set_inheritable(life_w, False)
        self._pid, self._dir, self._lifeline = os.getpid(), sock_dir, life_w
        log.debug("python fork server %d started (%s)", self._proc.pid, sock_dir)

    def _stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            os.close(self._lifeline)  # the server sees EOF and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            shutil.rmtree(self._dir, ignore_errors=True)
        self._proc, self._lifeline, self._dir, self._pid = None, -1, "", 0

    @property
    def pid(self) -> int | None:
        """The running server's pid (None before the first call)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        self._stop()
