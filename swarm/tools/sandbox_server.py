"""The program that runs model-written Python: a fork server, started once per worker process.

This file is not imported by swarm: :mod:`swarm.tools.sandbox` reads its source and starts it as
``python -I -S -B -c <source> <config> <control fd>``, inside bubblewrap when isolation is on. It
uses the standard library only, and never runs user code itself; it forks a fresh child per call.

Why a fork server: starting CPython costs many times the CPU of forking one already started, even
with ``-I -S`` (docs/benchmarks.md, "Measured design choices"). Why inside the sandbox: the server
is then as confined as its children (no network, read-only system, no view of swarm's files or
processes), and every limit is fixed when it starts — a request carries file descriptors, never limits.

Protocol, over a ``SOCK_SEQPACKET`` socketpair inherited at start (no path anyone could connect to):

    requester → server   one message b"run" + five fds: stdin, stdout, stderr, the workspace
                         directory (an ``O_DIRECTORY`` fd), the call's own channel socket
    server → channel     4 bytes: the child's pid, with a pidfd of it (to kill it from outside)
    server → channel     4 bytes: the exit code (``128 + N``: killed by signal N; 125: time limit)

EOF on the control socket (the requester's process died) ends the server.

With isolation, each call is three processes:

* **M** (forked by the server) enters a new PID and mount namespace and waits for G;
* **G** is PID 1 of that namespace: it mounts a fresh ``/proc``, a size-capped tmpfs on ``/work``
  and on ``/tmp``, copies the workspace in through the directory fd, starts U, and when U ends (or
  the time limit hits) kills every process left in the namespace, copies ``/work`` back and exits.
  When PID 1 exits the kernel kills whatever is left, so nothing outlives the call;
* **U** drops every privilege (a user id of its own — or a user namespace of its own when the
  server is not root — no capabilities, ``no_new_privs``, resource limits including a process
  count) and runs the code.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

from swarm.tools.sandbox_boot import boot  # the sources of both are prepended at start
from swarm.tools.sandbox_copy import copy_tree

INT = struct.Struct("!i")
#: Exit code of a call that hit its hard time limit (the soft limit raises inside the code).
HARD_TIMEOUT_EXIT = 125
#: Exit code when the sandbox itself could not be set up for a call.
SETUP_FAILED_EXIT = 126

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 24, 38
_CAP_LAST = 63

_libc: Any = None


def _sys(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _sys(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _sys(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, arg: int) -> None:
    _sys(
        _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
        "prctl",
    )


def _drop_bounding_set() -> None:
    """No capability can ever be regained (needs CAP_SETPCAP; a no-op without it)."""
    for cap in range(_CAP_LAST + 1):
        failed = _libc.prctl(ctypes.c_int(_PR_CAPBSET_DROP), ctypes.c_ulong(cap), 0, 0, 0) != 0
        if failed and ctypes.get_errno() == 22:  # EINVAL: past the last capability this kernel knows
            break


def _drop_capabilities() -> None:
    """Empty the permitted, effective and inheritable sets of this thread."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    _sys(_libc.capset(header, data), "capset")


def _readable(fds: list[int], timeout: float | None) -> list[int]:
    """The descriptors of ``fds`` ready to read within ``timeout`` seconds (None: wait). poll, not
    select: the requester's descriptors, inherited by number, may lie past FD_SETSIZE (1024)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000))]


def _say(fd: int, what: str, exc: BaseException) -> None:
    """Tell the requester (on the call's stderr) why a call's process is about to exit."""
    with contextlib.suppress(BaseException):
        os.write(fd, f"{what}: {type(exc).__name__}: {exc}\n".encode())


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the user's process


def _relocate(cfg: dict[str, Any]) -> None:
    """Point this interpreter at the stash paths of the Python directories the call's tmpfs hid.

    Not bound back in place: a virtual environment under ``/work`` would then be among the code's
    files (and copied out with them). ``sys.path``, the site directories, ``sys.executable`` (for
    subprocesses) and the search paths of packages already imported move to the stash instead.
    """
    moves: list[tuple[str, str]] = [(str(path), str(stash)) for stash, path in cfg["relocate"]]
    if not moves:
        return

    def moved(p: str) -> str:
        for old, new in moves:
            if p == old or p.startswith(old + "/"):
                return new + p[len(old) :]
        return p

    sys.path[:] = [moved(p) for p in sys.path]
    cfg["site_paths"] = [moved(p) for p in cfg["site_paths"]]
    for name in ("executable", "_base_executable", "prefix", "exec_prefix", "base_prefix", "base_exec_prefix"):
        value = getattr(sys, name, None)
        if isinstance(value, str):
            setattr(sys, name, moved(value))
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [moved(p) for p in search]
    sys.path_importer_cache.clear()


def _limit(cfg: dict[str, Any]) -> None:
    import resource as r

    lim = cfg["limits"]
    for kind, wanted in (
        (r.RLIMIT_AS, lim["memory"]),
        (r.RLIMIT_CPU, lim["cpu"]),
        (r.RLIMIT_FSIZE, lim["fsize"]),
        (r.RLIMIT_NOFILE, lim["nofile"]),
        (r.RLIMIT_NPROC, lim["nproc"]),
        (r.RLIMIT_CORE, 0),
    ):
        hard = r.getrlimit(kind)[1]
        value = wanted if hard == r.RLIM_INFINITY else min(wanted, hard)
        r.setrlimit(kind, (value, value))


def _become_user(cfg: dict[str, Any], uid: int) -> None:
    """Drop to an identity that owns nothing of swarm's and can gain nothing back."""
    if cfg["root"]:
        # A user id of the call's own: RLIMIT_NPROC then counts this call's processes only, and
        # nothing on the host belongs to it. Changing every uid away from 0 clears capabilities.
        _drop_bounding_set()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        # Not root: a user namespace of the call's own gives RLIMIT_NPROC the same meaning.
        outer_uid, outer_gid = os.getuid(), os.getgid()
        _unshare(_CLONE_NEWUSER)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{outer_uid} {outer_uid} 1")
        _write("/proc/self/gid_map", f"{outer_gid} {outer_gid} 1")
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _drop_capabilities()


def _user(fds: list[int], cfg: dict[str, Any], uid: int, cwd: str | None) -> None:
    """The user's process (U): never returns."""
    code = SETUP_FAILED_EXIT
    try:
        os.setsid()
        os.chdir("/work" if cwd is None else cwd)
        for i, fd in enumerate(fds[:3]):
            os.dup2(fd, i)
        os.closerange(3, 1 << 16)
        if cwd is None:
            _become_user(cfg, uid)
        else:
            _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        os.umask(0o022)
        _limit(cfg)
        os.environ.clear()
        os.environ.update(cfg["env"])
        os.environ["HOME"] = os.getcwd()
        code = boot(cfg)
    except BaseException as e:
        _say(2, "could not run the code", e)
    finally:
        os._exit(code & 0xFF)


# --------------------------------------------------------------------------- one isolated call


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else SETUP_FAILED_EXIT


def _init(fds: list[int], cfg: dict[str, Any], uid: int) -> None:
    """PID 1 of the call's namespace (G): never runs user code; never returns."""
    code = SETUP_FAILED_EXIT
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        os.umask(0)
        ws = f"/proc/self/fd/{fds[3]}"
        _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
        opts = _MS_NOSUID | _MS_NODEV
        _mount("tmpfs", "/work", "tmpfs", opts, f"size={cfg['work_bytes']},mode=0777")
        _mount("tmpfs", "/tmp", "tmpfs", opts, f"size={cfg['tmp_bytes']},mode=1777")
        _relocate(cfg)
        restored = copy_tree(ws, "/work", 0o666, 0o777)
        _mount("proc", "/proc", "proc", opts | _MS_NOEXEC)
        user = os.fork()
        if user == 0:
            _user(fds, cfg, uid, None)
        os.close(fds[0])
        pidfd = os.pidfd_open(user)
        timed_out = not _readable([pidfd], float(cfg["hard_timeout"]))
        os.close(pidfd)
        # PID 1 is not hit by kill(-1): this ends everything the code started, daemons included.
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        status = None
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == user:
                status = st
        copy_tree("/work", f"/proc/self/fd/{fds[3]}", 0o644, 0o755, unchanged=restored)
        code = HARD_TIMEOUT_EXIT if timed_out else (_exit_code(status) if status is not None else SETUP_FAILED_EXIT)
    except BaseException as e:
        _say(fds[2], "could not set up the sandbox for this call", e)
    finally:
        os._exit(code)


def _isolated_call(fds: list[int], cfg: dict[str, Any], uid: int) -> None:
    """M: a new PID and mount namespace for the call, then wait for its PID 1 (G)."""
    code = SETUP_FAILED_EXIT
    try:
        _unshare(_CLONE_NEWPID | _CLONE_NEWNS)
        init = os.fork()
        if init == 0:
            _init(fds, cfg, uid)
        for fd in fds[:4]:
            os.close(fd)
        code = _exit_code(os.waitpid(init, 0)[1])
    except BaseException as e:
        _say(fds[2], "could not start the sandbox for this call", e)
    finally:
        os._exit(code)


# --------------------------------------------------------------------------- the server


def _child(fds: list[int], cfg: dict[str, Any], seq: int) -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    # Only this call's descriptors: another call's channel held open here would keep its requester
    # from ever seeing EOF if the server died.
    keep = set(fds[:4])
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    if cfg["isolate"]:
        _isolated_call(fds, cfg, cfg["uid_base"] + seq % cfg["uid_span"])
    else:
        _user(fds, cfg, 0, f"/proc/self/fd/{fds[3]}")


def serve(config: str, control_fd: int) -> None:
    """The server's loop: fork a child per request, report pids and exit codes on the call's channel."""
    global _libc
    cfg = json.loads(config)
    _libc = ctypes.CDLL(None, use_errno=True)
    # The first compile() in a process initialises parser state; done here it is shared by every
    # child. Frozen objects stay out of the children's collections (which would copy every page).
    exec(compile("pass", "<warm-up>", "exec"), {})
    import _sitebuiltins  # noqa: F401  (what the children's boot imports)
    import resource  # noqa: F401

    gc.collect()
    gc.freeze()
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    running: dict[int, socket.socket] = {}
    seq = 0
    while True:
        ready = _readable([control.fileno(), wake_r], None)
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
                if not cfg["isolate"]:
                    # Kill what the code left in its session while its id cannot be reused yet.
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)
                status = os.waitpid(pid, 0)[1]
                chan = running.pop(pid, None)
                if chan is not None:
                    with contextlib.suppress(OSError):
                        chan.sendall(INT.pack(_exit_code(status)))
                    chan.close()
        if control.fileno() in ready:
            try:
                msg, fds, _, _ = socket.recv_fds(control, 64, 5)
            except OSError:
                os._exit(0)
            if not msg and not fds:
                os._exit(0)  # the requester is gone
            if len(fds) != 5:
                for fd in fds:
                    os.close(fd)
                continue
            seq += 1
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(fds, cfg, seq)
            for fd in fds[:4]:
                os.close(fd)
            chan = socket.socket(fileno=fds[4])
            running[pid] = chan
            try:
                pidfd = os.pidfd_open(pid)
                try:
                    socket.send_fds(chan, [INT.pack(pid)], [pidfd])
                finally:
                    os.close(pidfd)
            except OSError:
                pass


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
