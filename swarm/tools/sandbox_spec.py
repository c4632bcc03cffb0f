"""What a python sandbox is: its limits, and the bubblewrap command line that makes it.

Pure functions of the interpreter's layout and the spec (plus :func:`probe`, which tries the
command once): which directories the sandbox sees read-only, which namespaces it gets, and which
capabilities its server keeps. :mod:`swarm.tools.sandbox` starts and talks to the server.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: How the server's interpreter starts: isolated mode, no site (see :func:`site_dirs`), no bytecode.
FLAGS = ("-I", "-S", "-B")
#: What of /etc a Python program may need (shared libraries, time zone, certificates, fonts).
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "ssl",
    "ca-certificates",
    "fonts",
    "mime.types",
    "passwd",
    "group",
    "nsswitch.conf",
    "matplotlibrc",
)
_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: Where each call mounts a fresh tmpfs. A Python installation under one of them (a virtual
#: environment in /tmp, say) is also bound at a stash path, where the call's interpreter finds it
#: (sandbox_server._relocate).
_PER_CALL_MOUNTS = ("/work", "/tmp")
_STASH = "/.swarm-python"


def hidden_roots() -> list[tuple[str, str]]:
    """(stash path, real path) of the Python directories a call's own tmpfs would hide."""
    under = [r for r in _python_roots() if any(r == m or r.startswith(m + "/") for m in _PER_CALL_MOUNTS)]
    return [(f"{_STASH}/{i}", r) for i, r in enumerate(under)]


class SandboxUnavailable(OSError):
    """Isolation was asked for but cannot be had on this machine (the message says why)."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Fixed when a server starts: no request can change them."""

    memory: int
    cpu: int
    fsize: int
    nofile: int
    nproc: int


@dataclass(frozen=True, kw_only=True)
class SandboxSpec:
    """Everything a server is started with; one server per distinct spec in a process."""

    isolate: bool
    network: bool
    limits: Limits
    soft_timeout: float
    hard_timeout: float
    work_bytes: int
    tmp_bytes: int


def interpreter() -> str:
    # Never "python" from PATH: a pyenv shim is a shell script that makes every spawn slow
    # (docs/benchmarks.md, "Measured design choices"). realpath() resolves any
    # symlink to the real binary, except inside a venv, where the symlink is what finds
    # pyvenv.cfg (and with it the venv's packages) and costs nothing extra.
    if sys.prefix != sys.base_prefix:
        return sys.executable
    return os.path.realpath(sys.executable)


@functools.cache
def site_dirs(with_pth: bool) -> tuple[str, ...]:
    """The site-packages directories (and, outside the sandbox, what their ``.pth`` files add).

    Children run with ``-S`` because executing ``.pth`` files (editable-install finders,
    setuptools' distutils hack, ...) can triple the interpreter's start-up time. In the sandbox only
    real site-packages are visible: a ``.pth`` line may point anywhere, a source checkout with its
    ``.env`` included.
    """
    dirs: list[str] = []
    for d in site.getsitepackages():
        if not os.path.isdir(d):
            continue
        dirs.append(d)
        if not with_pth:
            continue
        for pth in sorted(Path(d).glob("*.pth")):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for raw in pth.read_text("utf-8").splitlines():
                    line = raw.strip()
                    if not line or line.startswith(("#", "import ", "import\t")):
                        continue
                    extra = os.path.join(d, line)
                    if os.path.isdir(extra) and extra not in dirs:
                        dirs.append(extra)
    return tuple(dirs)


def _python_roots() -> list[str]:
    """Directories that hold the interpreter, its standard library and site-packages."""
    roots: list[str] = []
    for d in (sys.base_prefix, sys.prefix, *site_dirs(False), os.path.dirname(interpreter())):
        real = os.path.realpath(d)
        for p in {d, real}:
            if p.startswith("/usr/") or any(p == r or p.startswith(r + "/") for r in roots):
                continue
            roots.append(p)
    return roots


def bwrap_argv(bwrap: str, spec: SandboxSpec, as_root: bool) -> list[str]:
    """The bubblewrap command line the server runs under (a pure function of its inputs)."""
    # No --die-with-parent: it is tied to the *thread* that started bubblewrap (PR_SET_PDEATHSIG), so a
    # worker thread ending would kill the server under every other thread's calls. The server exits
    # instead when its control socket reaches EOF, i.e. when the process that started it is gone,
    # and the whole sandbox (its PID namespace) goes with it.
    argv = [bwrap, "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not spec.network:
        argv.append("--unshare-net")
    # The server keeps what it needs to give each call its own namespaces and user id; the code
    # it runs drops all of it (sandbox_server._become_user).
    caps = (
        ["CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL", "CAP_DAC_READ_SEARCH"]
        if as_root
        else ["CAP_SYS_ADMIN"]
    )
    if as_root:
        argv += ["--cap-drop", "ALL"]
    else:
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    for cap in caps:
        argv += ["--cap-add", cap]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_DIRS:
        path = "/" + top
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[str] = set()
    for root in _python_roots():
        # Parents are created traversable: a 0700 home (/root/.pyenv/...) would otherwise be copied
        # as it is, and the call's own user id could not reach the standard library.
        parent = os.path.dirname(root)
        ancestors = []
        while parent not in ("/", "") and parent not in made and not parent.startswith("/usr"):
            ancestors.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(ancestors):
            argv += ["--perms", "0755", "--dir", d]
            made.add(d)
        argv += ["--ro-bind", root, root]
    if stashed := hidden_roots():
        # Traversable by the call's own user id, which owns nothing here (bubblewrap makes 0700).
        argv += ["--perms", "0755", "--dir", _STASH]
    for stash, root in stashed:
        argv += ["--ro-bind", root, stash]
    argv += ["--proc", "/proc", "--dev", "/dev", "--dir", "/work", "--dir", "/tmp", "--chdir", "/", "--clearenv"]
    return argv


@functools.cache
def probe(network: bool = False) -> str | None:
    """None if bubblewrap isolation works on this machine, else why not (cached per process)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return (
            "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap); set "
            "SWARM_PYTHON_ISOLATION=off to run model code without isolation (unsafe)"
        )
    limits = Limits(memory=1 << 30, cpu=5, fsize=1 << 20, nofile=64, nproc=64)
    spec = SandboxSpec(
        isolate=True,
        network=network,
        limits=limits,
        soft_timeout=5.0,
        hard_timeout=5.0,
        work_bytes=1 << 20,
        tmp_bytes=1 << 20,
    )
    argv = [
        *bwrap_argv(bwrap, spec, os.geteuid() == 0),
        "--",
        interpreter(),
        *FLAGS,
        "-c",
        "import ctypes; print('ok')",
    ]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={}, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not be run: {e}"
    if out.returncode != 0 or out.stdout.strip() != "ok":
        detail = (out.stderr or out.stdout).strip().splitlines()
        return (
            f"bubblewrap refused to start a sandbox ({detail[-1] if detail else f'exit {out.returncode}'}); "
            "the kernel may forbid user namespaces (sysctl kernel.unprivileged_userns_clone=1, or run the "
            "worker in a container that allows them); set SWARM_PYTHON_ISOLATION=off to run model code "
            "without isolation (unsafe)"
        )
    return None


def isolation_report(mode: str, network: bool) -> dict[str, object]:
    """What ``swarm doctor``, ``swarm worker --check`` and ``/v1/info`` say about model code."""
    if mode == "off":
        return {
            "python_isolation": "off",
            "available": True,
            "network": True,
            "detail": "python tool code runs as swarm's own user, without isolation (SWARM_PYTHON_ISOLATION=off)",
        }
    why = probe(network)
    return {
        "python_isolation": mode,
        "available": why is None,
        "network": network,
        "detail": why
        or "bubblewrap sandbox: no network, read-only system, private workspace, "
        "a PID namespace and a user id per call",
    }
