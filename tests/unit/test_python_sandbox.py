"""The python tool's sandbox server: one pre-started interpreter per process forks every call."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swarm.config import Settings
from swarm.tools import sandbox, sandbox_spec
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool


@pytest.fixture(params=["bwrap", "off"])
def isolation(request: pytest.FixtureRequest) -> str:
    if request.param == "bwrap" and sandbox_spec.probe() is not None:
        pytest.fail(f"bubblewrap isolation is unavailable here: {sandbox_spec.probe()}")
    return str(request.param)


def _ctx(tmp_path: Path, isolation: str, **overrides: object) -> ToolContext:
    settings = Settings(
        _env_file=None,
        home=tmp_path,  # type: ignore[call-arg]
        **{"python_timeout": 10.0, "python_isolation": isolation, **overrides},
    )
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return ToolContext(run_id="r", agent_id="a", step_id="s", workspace=workspace, settings=settings)


def _run(code: str, ctx: ToolContext) -> str:
    r = PythonTool().run({"code": code}, ctx)
    assert not r.is_error, r.content
    return r.content


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _servers() -> set[int]:
    return set(sandbox.running_server_pids())


def test_calls_are_forked_by_one_server_not_by_the_worker(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    _run("print(1)", ctx)
    before = _servers()
    for _ in range(3):
        _run("print(1)", ctx)
    assert _servers() == before
    assert os.getpid() not in before
    assert all(_alive(p) for p in before)


def test_nothing_is_kept_between_calls(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    _run("import builtins, sys, json\nbuiltins.leak = 1\nsys.modules['leaked'] = sys\nx = 5\nprint('set')", ctx)
    out = _run("import builtins, sys\nprint(hasattr(builtins, 'leak'), 'leaked' in sys.modules, 'x' in globals())", ctx)
    assert out == "False False False"


def test_child_gets_its_own_session_cwd_env_and_no_inherited_descriptors(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    out = _run(
        textwrap.dedent("""\
        import os
        print(os.getsid(0) == os.getpid(), os.getcwd(), os.environ['HOME'])
        print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))
    """),
        ctx,
    )
    first, fds = out.splitlines()
    where = "/work" if isolation == "bwrap" else str(ctx.workspace)
    assert first == f"True {where} {where}"
    # stdin, stdout, stderr, and the directory listdir itself opened: no socket or pipe of the server.
    assert fds == "[0, 1, 2, 3]"


def test_threads_and_atexit_of_user_code_finish_before_the_child_exits(tmp_path: Path, isolation: str) -> None:
    out = _run(
        textwrap.dedent("""\
        import atexit, threading, time
        atexit.register(lambda: print('atexit ran'))
        def late():
            time.sleep(0.2)
            print('thread done')
        threading.Thread(target=late).start()
        print('main done')
    """),
        _ctx(tmp_path, isolation),
    )
    assert out.splitlines() == ["main done", "thread done", "atexit ran"]


def test_a_killed_server_is_replaced_on_the_next_call(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    _run("print(1)", ctx)
    spec_server = sandbox.server_for(PythonTool_spec(ctx))
    first = spec_server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _run("print(6 * 7)", ctx) == "42"
    assert spec_server.pid not in (None, first)


def PythonTool_spec(ctx: ToolContext) -> sandbox_spec.SandboxSpec:
    from swarm.tools.python_exec import _spec

    return _spec(ctx.settings)


def test_concurrent_calls_from_threads_each_get_their_own_output(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: PythonTool().run({"code": f"print({i} * 2)"}, ctx), range(40)))
    assert [o.content for o in outs] == [str(i * 2) for i in range(40)]
    assert not any(o.is_error for o in outs)
    assert all(o.meta["exit_code"] == 0 for o in outs)


def test_the_server_outlives_the_thread_that_started_it(tmp_path: Path, isolation: str) -> None:
    # Short-lived threads each making calls: the first one starts the server; when it ends, the
    # others' calls must not lose the server (bubblewrap's --die-with-parent is per thread).
    ctx = _ctx(tmp_path, isolation, python_timeout=11.0)  # a spec (and so a server) of this test's own
    codes: list[object] = []

    def calls() -> None:
        for k in range(5):
            codes.append(PythonTool().run({"code": f"print({k})"}, ctx).meta["exit_code"])

    for _ in range(3):
        threads = [threading.Thread(target=calls) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [0] * 60


def test_the_server_exits_with_the_process_that_started_it(tmp_path: Path, isolation: str) -> None:
    script = textwrap.dedent(f"""\
        from pathlib import Path
        from swarm.config import Settings
        from swarm.tools import sandbox, sandbox_spec
        from swarm.tools.base import ToolContext
        from swarm.tools.python_exec import PythonTool
        ws = Path({str(tmp_path)!r}) / "ws"
        ws.mkdir(exist_ok=True)
        ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=ws,
                          settings=Settings(_env_file=None, home=ws.parent, python_isolation={isolation!r}))
        assert PythonTool().run({{"code": "print(1)"}}, ctx).content == "1"
        print(*sandbox.running_server_pids(), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    servers = [int(p) for p in out.stdout.split()]
    assert len(servers) == 1
    deadline = time.monotonic() + 10
    while _alive(servers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(servers[0])


def test_a_forked_worker_process_starts_a_server_of_its_own(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    _run("print(1)", ctx)
    parent_server = sandbox.server_for(PythonTool_spec(ctx)).pid
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # like a Celery prefork child
        code = 1
        try:
            os.close(r)
            _run("print(1)", ctx)
            server = sandbox.server_for(PythonTool_spec(ctx))
            os.write(w, str(server.pid).encode())
            server.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        child_server = int(f.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_server != parent_server
    assert parent_server is not None and _alive(parent_server)  # the child left its parent's server alone


def test_bubblewrap_command_gives_no_network_and_no_view_of_swarm(tmp_path: Path) -> None:
    limits = sandbox_spec.Limits(memory=1, cpu=1, fsize=1, nofile=1, nproc=1)
    spec = sandbox_spec.SandboxSpec(
        isolate=True, network=False, limits=limits, soft_timeout=1, hard_timeout=1, work_bytes=1, tmp_bytes=1
    )
    argv = sandbox_spec.bwrap_argv("/usr/bin/bwrap", spec, as_root=True)
    assert "--unshare-net" in argv
    assert "--unshare-pid" in argv
    assert "--clearenv" in argv
    binds = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")}
    # Nothing writable is bound in, and neither the home nor the working directory is visible.
    assert "--bind" not in argv
    assert str(Path.home()) not in binds
    assert os.getcwd() not in binds
    networked = sandbox_spec.bwrap_argv("/usr/bin/bwrap", dataclasses.replace(spec, network=True), as_root=True)
    assert "--unshare-net" not in networked


def test_only_files_the_code_changed_are_written_back(tmp_path: Path, isolation: str) -> None:
    ctx = _ctx(tmp_path, isolation)
    (ctx.workspace / "keep.txt").write_text("same")
    (ctx.workspace / "edit.txt").write_text("old")
    before = (ctx.workspace / "keep.txt").stat()
    _run("open('edit.txt', 'w').write('new')\nopen('new.txt', 'w').write(open('keep.txt').read())\nprint('ok')", ctx)
    after = (ctx.workspace / "keep.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (ctx.workspace / "edit.txt").read_text() == "new"
    assert (ctx.workspace / "new.txt").read_text() == "same"
