"""Third-party tool plugins out of the worker process: each call a process of its own under bubblewrap.

A worker holds swarm's database connections, its broker and its settings in memory; a plugin run in
it could reach all of them. So with ``SWARM_PLUGIN_ISOLATION=bwrap`` (the default) a plugin is never
imported by the worker: discovery asks :mod:`swarm.tools.plugin_runner`, started in a sandbox, what
the installed entry points offer (name, description, JSON schema), and every call starts the runner
again with the entry point, the arguments and the call's context on stdin and reads the
:class:`ToolResult` back as JSON on stdout. The sandbox (like an MCP stdio server's) has the whole
file system read-only, a private ``/tmp``, SWARM_HOME and the SQLite database hidden, the run's
workspace bound read-write at :data:`SANDBOX_WORKSPACE`, its own PID namespace, no capabilities, a
clean environment, no network unless the plugin declares ``network = True`` and the operator lists
it in SWARM_PLUGIN_NETWORK, and a deadline (SWARM_PLUGIN_TIMEOUT) that kills it. Whatever goes wrong
(a crash, the deadline, output that is not a result) becomes a tool error for the model.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from swarm.config import Settings, explicit_env_file
from swarm.tools.base import ToolContext, ToolImage, ToolResult
from swarm.tools.sandbox_spec import interpreter

#: Where the run's workspace is inside the sandbox (on its private /tmp, so always creatable).
SANDBOX_WORKSPACE = "/tmp/workspace"
#: The plugin's whole environment: nothing of the worker's (no secrets, no SWARM_*).
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
#: The runner's start: read the request, take the worker's import path, hand over (-I: no PYTHON*
#: variables, no user site, not the working directory).
_BOOT = (
    "import json,sys;r=json.loads(sys.stdin.buffer.read());sys.path[:]=r['sys_path'];"
    "from swarm.tools.plugin_runner import main;main(r)"
)
_STDERR_TAIL = 1500
#: Seconds a discovery (importing every plugin once) may take.
DESCRIBE_TIMEOUT = 120.0


class PluginRunFailed(Exception):
    """The runner gave no answer (the message says why, for the model or the operator)."""


def _hidden_files(database_url: str) -> list[str]:
    """The SQLite database's files, wherever they are (usually in SWARM_HOME, hidden anyway), and the
    ``.env`` file the settings came from, if one was named."""
    # Imported here: the runner imports this module, and SQLAlchemy would add a quarter second to each call.
    from sqlalchemy.engine import make_url

    files = []
    with contextlib.suppress(Exception):
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            db = os.path.realpath(url.database)
            files += [db, db + "-wal", db + "-shm", db + "-journal"]
    with contextlib.suppress(ValueError):
        if (env_file := explicit_env_file()) is not None:
            files.append(os.path.realpath(env_file))
    return [f for f in files if os.path.isfile(f)]


def _import_dirs(hidden: list[str]) -> list[str]:
    """The worker's interpreter (``sys.prefix``) and import path entries a hidden directory (/tmp,
    SWARM_HOME) covers: bound back read-only so the runner starts and the plugin's package is
    found, unless the entry holds a hidden directory itself."""
    out = []
    # The interpreter's own installation first (a virtual environment under /tmp: its bin/python
    # is what the sandbox execs), then the import path.
    for entry in (sys.prefix, *sys.path):
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        under = [h for h in hidden if real == h or real.startswith(h + "/")]
        holds = [h for h in hidden if h.startswith(real + "/") and h != "/tmp"]
        if under and not holds and real not in out:
            out.append(real)
    return out


def bwrap_argv(bwrap: str, settings: Settings, *, network: bool, workspace: Path | None) -> list[str]:
    """The bubblewrap prefix one runner process starts under (a pure function of its inputs and the
    file system's layout)."""
    argv = [bwrap, "--new-session", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    argv.append("--unshare-cgroup-try")
    if not network:
        argv.append("--unshare-net")
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    hidden = ["/tmp"]
    # SWARM_HOME, and the temporary directory where other runs' workspaces are materialised when
    # TMPDIR is not /tmp: empty tmpfs in the sandbox.
    for d in (os.path.realpath(Path(settings.home).expanduser()), os.path.realpath(tempfile.gettempdir())):
        if d not in hidden and os.path.isdir(d) and d != "/":
            argv += ["--tmpfs", d]
            hidden.append(d)
    for f in _hidden_files(settings.database_url):
        argv += ["--ro-bind", "/dev/null", f]
    for d in _import_dirs(hidden):
        argv += ["--ro-bind", d, d]
    if workspace is not None:
        argv += ["--bind", str(workspace), SANDBOX_WORKSPACE]
    argv.append("--clearenv")
    for k, v in CLEAN_ENV.items():
        argv += ["--setenv", k, v]
    return [*argv, "--chdir", SANDBOX_WORKSPACE if workspace is not None else "/tmp", "--"]


def run_runner(
    request: dict[str, Any], settings: Settings, *, network: bool, workspace: Path | None, timeout: float
) -> dict[str, Any]:
    """Start the runner under bubblewrap, hand it ``request``, return its answer (PluginRunFailed if none)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise PluginRunFailed(
            "bubblewrap (bwrap) is not installed, and SWARM_PLUGIN_ISOLATION=bwrap runs tool plugins under it "
            "(install bubblewrap, or set SWARM_PLUGIN_ISOLATION=off to run plugins in the worker process)"
        )
    argv = [*bwrap_argv(bwrap, settings, network=network, workspace=workspace), interpreter(), "-I", "-B", "-c", _BOOT]
    body = json.dumps({**request, "sys_path": [p for p in sys.path if p]}).encode()
    # A session of its own (bwrap's process group): the deadline kills bwrap, and with it
    # (--die-with-parent, the PID namespace) everything the plugin started. bwrap itself gets no
    # secrets either: its PID 1 in the sandbox is a copy of it, whose /proc/1/environ is readable there.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENV,
        cwd="/",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(body, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        raise PluginRunFailed(f"did not finish within {timeout:g} s (SWARM_PLUGIN_TIMEOUT) and was stopped") from None
    tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
    note = f"; its last output: {tail}" if tail else ""
    if proc.returncode != 0:
        code = proc.returncode
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        if code > 128 and code - 128 in signal.Signals._value2member_map_:
            how = f"was killed by signal {signal.Signals(code - 128).name}"  # bwrap reports its child's death so
        raise PluginRunFailed(f"{how} before returning a result{note}")
    try:
        answer = json.loads(out)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if not isinstance(answer, dict):
        raise PluginRunFailed(f"returned no result (its output was not the runner's JSON answer){note}")
    return answer


def decode_result(answer: dict[str, Any]) -> ToolResult:
    """The runner's answer to a call, checked: a malformed one is the plugin's error."""
    if "error" in answer:
        return ToolResult(f"tool failed: {answer['error']}", is_error=True)
    try:
        content, is_error, meta = answer["content"], answer["is_error"], answer["meta"]
        images = tuple(ToolImage(i["mime"], base64.b64decode(i["data"], validate=True)) for i in answer["images"])
    except (KeyError, TypeError, binascii.Error) as exc:
        return ToolResult(f"tool failed: it returned a malformed result ({exc})", is_error=True)
    typed = isinstance(content, str) and isinstance(is_error, bool) and isinstance(meta, dict)
    if not typed or not all(isinstance(i.mime, str) for i in images):
        return ToolResult("tool failed: it returned a malformed result (wrong types)", is_error=True)
    return ToolResult(content, is_error=is_error, meta=meta, images=images)


class SandboxedPlugin:
    """A plugin as the worker sees it: what discovery reported, and a call that runs out of process."""

    def __init__(
        self, described: dict[str, Any], entry_point: tuple[str, str], settings: Settings, safe: dict[str, Any]
    ) -> None:
        self.name: str = described["name"]
        self.description: str = described["description"]
        self.parameters: dict[str, Any] = described["parameters"]
        self.uses_workspace: bool = bool(described["uses_workspace"])
        allowed = {n.strip() for n in settings.plugin_network.split(",") if n.strip()}
        #: The plugin asked for the network and the operator allowed it (SWARM_PLUGIN_NETWORK).
        self.network = bool(described.get("network")) and self.name in allowed
        self.entry_point = entry_point
        #: The worker's settings (where SWARM_HOME and the database are, to hide them) and the
        #: secret-free copy the plugin is handed (swarm.tools.plugin.plugin_settings, as JSON).
        self._settings, self._safe = settings, safe

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        workspace = ctx.workspace if self.uses_workspace and ctx.workspace.is_dir() else None
        request = {
            "mode": "call",
            "entry_point": list(self.entry_point),
            "settings": self._safe,
            "memory_mb": self._settings.plugin_memory_mb,
            "args": args,
            "context": {
                "run_id": ctx.run_id,
                "agent_id": ctx.agent_id,
                "step_id": ctx.step_id,
                "workspace": SANDBOX_WORKSPACE if workspace is not None else "/tmp",
            },
        }
        try:
            answer = run_runner(
                request,
                self._settings,
                network=self.network,
                workspace=workspace,
                timeout=self._settings.plugin_timeout,
            )
        except PluginRunFailed as exc:
            return ToolResult(f"tool {self.name!r} failed: its sandboxed process {exc}", is_error=True)
        except OSError as exc:
            return ToolResult(f"tool {self.name!r} could not be started: {exc}", is_error=True)
        return decode_result(answer)


def describe(entry_points: list[tuple[str, str]], settings: Settings, safe: dict[str, Any]) -> list[dict[str, Any]]:
    """What each entry point offers, asked of the runner in a sandbox: one dict per entry point with
    ``tool`` (name, description, parameters, uses_workspace, network), ``builtin`` or ``error``."""
    if not entry_points:
        return []
    request = {
        "mode": "describe",
        "entry_points": [list(ep) for ep in entry_points],
        "settings": safe,
        "memory_mb": settings.plugin_memory_mb,
    }
    try:
        answer = run_runner(request, settings, network=False, workspace=None, timeout=DESCRIBE_TIMEOUT)
        found = answer.get("entry_points", answer.get("error"))
    except (PluginRunFailed, OSError) as exc:
        why = f"the sandboxed plugin runner {exc}" if isinstance(exc, PluginRunFailed) else repr(exc)
        return [{"error": why} for _ in entry_points]
    if not isinstance(found, list) or len(found) != len(entry_points):
        return [{"error": f"the sandboxed plugin runner gave no description: {found!r}"} for _ in entry_points]
    return [d if isinstance(d, dict) else {"error": "malformed description"} for d in found]


@functools.cache
def probe_failure() -> str | None:
    """None if bubblewrap can start a plugin sandbox on this machine, else why not (cached)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"]
    try:
        out = subprocess.run(argv, capture_output=True, timeout=30, env=CLEAN_ENV, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run: {exc}"
    return None if out.returncode == 0 else f"bubblewrap refused: {out.stderr.decode(errors='replace').strip()}"
