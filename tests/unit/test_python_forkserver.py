"""The python tool's fork server: each call is a fresh child of a pre-started interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from swarm.config import Settings
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool, _fork_server


def _ctx(tmp_path: Path, **overrides: object) -> ToolContext:
    settings = Settings(_env_file=None, home=tmp_path, **{"python_timeout": 10.0, **overrides})  # type: ignore[arg-type]
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


def test_calls_are_forked_by_one_server_not_by_the_worker(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    parents = {_run("import os; print(os.getppid())", ctx) for _ in range(3)}
    assert len(parents) == 1
    server = int(parents.pop())
    assert server != os.getpid()
    assert _alive(server)


def test_new_interpreter_per_call_when_the_fork_server_is_off(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, python_fork_server=False)
    assert int(_run("import os; print(os.getppid())", ctx)) == os.getpid()


def test_nothing_is_kept_between_calls(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    _run("import builtins, sys, json\nbuiltins.leak = 1\nsys.modules['leaked'] = sys\nx = 5\nprint('set')", ctx)
    out = _run("import builtins, sys\nprint(hasattr(builtins, 'leak'), 'leaked' in sys.modules, 'x' in globals())",
               ctx)
    assert out == "False False False"


def test_child_gets_its_own_session_cwd_env_and_no_inherited_descriptors(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    out = _run(textwrap.dedent("""\
        import os
        print(os.getsid(0) == os.getpid(), os.getcwd(), os.environ['HOME'])
        print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))
    """), ctx)
    first, fds = out.splitlines()
    assert first == f"True {ctx.workspace} {ctx.workspace}"
    # stdin, stdout, stderr, and the directory listdir itself opened: no socket or pipe of the server.
    assert fds == "[0, 1, 2, 3]"


def test_threads_and_atexit_of_user_code_finish_before_the_child_exits(tmp_path: Path) -> None:
    out = _run(textwrap.dedent("""\
        import atexit, threading, time
        atexit.register(lambda: print('atexit ran'))
        def late():
            time.sleep(0.2)
            print('thread done')
        threading.Thread(target=late).start()
        print('main done')
    """), _ctx(tmp_path))
    assert out.splitlines() == ["main done", "thread done", "atexit ran"]


def test_a_killed_server_is_replaced_on_the_next_call(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    first = int(_run("import os; print(os.getppid())", ctx))
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = int(_run("import os; print(os.getppid())", ctx))
    assert second != first
    assert _run("print(6 * 7)", ctx) == "42"


def test_concurrent_calls_from_threads_each_get_their_own_output(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: PythonTool().run({"code": f"print({i} * 2)"}, ctx), range(40)))
    assert [o.content for o in outs] == [str(i * 2) for i in range(40)]
    assert not any(o.is_error for o in outs)


def test_the_server_exits_with_the_process_that_started_it(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""\
        from pathlib import Path
        from swarm.config import Settings
        from swarm.tools.base import ToolContext
        from swarm.tools.python_exec import PythonTool
        ws = Path({str(tmp_path)!r}) / "ws"
        ws.mkdir(exist_ok=True)
        ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=ws,
                          settings=Settings(_env_file=None, home=ws.parent))
        print(PythonTool().run({{"code": "import os; print(os.getppid())"}}, ctx).content, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    server = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server)


def test_a_forked_worker_process_starts_a_server_of_its_own(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    parent_server = int(_run("import os; print(os.getppid())", ctx))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # like a Celery prefork child
        code = 1
        try:
            os.close(r)
            os.write(w, _run("import os; print(os.getppid())", ctx).encode())
            _fork_server().close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        child_server = int(f.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_server != parent_server
    assert _alive(parent_server)  # the child left its parent's server alone
