"""The python tool, with real subprocesses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from swarm.config import Settings
from swarm.constants import MAX_TOOL_OUTPUT_CHARS
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool


def _ctx(tmp_path: Path, **overrides: object) -> ToolContext:
    settings = Settings(home=tmp_path, **{"python_timeout": 10.0, **overrides})  # type: ignore[arg-type]
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return ToolContext(run_id="r", agent_id="a", step_id="s", workspace=workspace, settings=settings)


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.fixture(params=["bwrap", "off"])
def tool(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PythonTool:
    """Every behaviour holds both in the bubblewrap sandbox and without isolation."""
    monkeypatch.setenv("SWARM_PYTHON_ISOLATION", request.param)
    return PythonTool()


def _marked_alive(marker: str) -> bool:
    """Whether any process on this machine has ``marker`` in its command line (works for processes in
    the sandbox's own PID namespaces too: /proc here shows them all)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and not _dead(int(entry.name)):
                return True
        except OSError:
            continue
    return False


def test_happy_path(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "x = 6 * 7\nprint(x)"}, _ctx(tmp_path))
    assert not r.is_error
    assert r.content == "42"
    assert r.meta["exit_code"] == 0


def test_nonzero_exit(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "import sys\nprint('partial')\nsys.exit(3)"}, _ctx(tmp_path))
    assert r.is_error
    assert "partial" in r.content
    assert r.content.endswith("exit code 3")


def test_exception_traceback_shows_user_code(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "def f():\n    return 1 / 0\nf()"}, _ctx(tmp_path))
    assert r.is_error
    assert "[stderr]" in r.content
    assert 'File "<code>", line 2, in f' in r.content
    assert "return 1 / 0" in r.content
    assert "ZeroDivisionError" in r.content
    assert "_swarm_boot" not in r.content


def test_syntax_error(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "print('unclosed'"}, _ctx(tmp_path))
    assert r.is_error
    assert "SyntaxError" in r.content
    assert "exit code 1" in r.content


@pytest.mark.parametrize("args", [{}, {"code": 5}, {"code": "   "}])
def test_bad_arguments(tool: PythonTool, tmp_path: Path, args: dict[str, object]) -> None:
    r = tool.run(args, _ctx(tmp_path))
    assert r.is_error
    assert "'code'" in r.content


def test_infinite_loop_times_out(tool: PythonTool, tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = tool.run({"code": "while True:\n    pass"}, _ctx(tmp_path, python_timeout=1.5))
    # Only proves the loop was stopped at all: a loaded 2-core CI box can take several seconds
    # to fork and reap, so the bound is loose (the timeout's accuracy is the message's job).
    assert time.monotonic() - t0 < 30
    assert r.is_error
    assert "timed out after 1.5 s" in r.content
    # The soft limit inside the child says where the code was stuck.
    assert "line 2" in r.content or "line 1" in r.content


def test_timeout_kills_the_whole_process_group(tool: PythonTool, tmp_path: Path) -> None:
    # Ignores the soft limit, so only the hard limit can stop it.
    marker = f"swarm-test-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import os, signal, subprocess, sys\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "while True:\n"
        "    pass\n"
    )
    ctx = _ctx(tmp_path, python_timeout=1.5)
    r = tool.run({"code": code}, ctx)
    assert r.is_error
    assert "timed out after 1.5 s" in r.content
    assert r.meta["timed_out"] is True
    deadline = time.monotonic() + 3
    while _marked_alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _marked_alive(marker)


def test_background_process_is_stopped_after_exit(tool: PythonTool, tmp_path: Path) -> None:
    marker = f"swarm-test-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "print('started')"
    )
    t0 = time.monotonic()
    r = tool.run({"code": code}, _ctx(tmp_path))
    assert not r.is_error
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 3
    while _marked_alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _marked_alive(marker)


def test_memory_hog_hits_the_cap(tool: PythonTool, tmp_path: Path) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))"
    r = tool.run({"code": code}, _ctx(tmp_path, python_memory_mb=200))
    assert r.is_error
    assert "MemoryError" in r.content
    assert "out of memory (limit 200 MiB)" in r.content


def test_single_huge_allocation_fails_cleanly(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "x = bytearray(1024 ** 3)\nprint('unreachable')"}, _ctx(tmp_path, python_memory_mb=200))
    assert r.is_error
    assert "MemoryError" in r.content
    assert "unreachable" not in r.content


def test_huge_output_is_truncated(tool: PythonTool, tmp_path: Path) -> None:
    code = "for i in range(200_000):\n    print(f'line {i}')\nprint('THE END')"
    r = tool.run({"code": code}, _ctx(tmp_path))
    assert not r.is_error
    assert len(r.content) <= MAX_TOOL_OUTPUT_CHARS
    assert "[output truncated:" in r.content
    assert r.content.startswith("line 0\n")
    assert r.content.endswith("THE END")  # the tail is kept too


def test_traceback_survives_flooded_stdout(tool: PythonTool, tmp_path: Path) -> None:
    code = "print('x' * 500_000)\nraise ValueError('the real problem')"
    r = tool.run({"code": code}, _ctx(tmp_path))
    assert r.is_error
    assert len(r.content) <= MAX_TOOL_OUTPUT_CHARS
    assert "ValueError: the real problem" in r.content


def test_files_land_in_the_workspace(tool: PythonTool, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (ctx.workspace / "input.txt").write_text("hello")
    code = (
        "import os\n"
        "data = open('input.txt').read()\n"
        "open('output.txt', 'w').write(data.upper())\n"
        "print(os.getcwd(), os.environ['HOME'])"
    )
    r = tool.run({"code": code}, ctx)
    assert not r.is_error, r.content
    assert (ctx.workspace / "output.txt").read_text() == "HELLO"
    where = "/work" if os.environ["SWARM_PYTHON_ISOLATION"] == "bwrap" else str(ctx.workspace)
    assert r.content == f"{where} {where}"
    # Modules written in an earlier call are importable in a later one.
    (ctx.workspace / "helper.py").write_text("VALUE = 7\n")
    r = tool.run({"code": "import helper\nprint(helper.VALUE)"}, ctx)
    assert r.content == "7"


def test_env_does_not_leak_secrets(tool: PythonTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_LLM_API_KEY", "sk-very-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    code = "import os\nprint(sorted(os.environ))\nprint(os.environ.get('SWARM_LLM_API_KEY'))"
    r = tool.run({"code": code}, _ctx(tmp_path))
    assert not r.is_error
    assert "sk-very-secret" not in r.content
    assert "SWARM_" not in r.content
    assert "AWS_SECRET" not in r.content
    assert r.content.endswith("None")


def test_limits_are_applied_in_the_child(tool: PythonTool, tmp_path: Path) -> None:
    code = (
        "import resource as R\n"
        "print(R.getrlimit(R.RLIMIT_AS), R.getrlimit(R.RLIMIT_NOFILE),"
        " R.getrlimit(R.RLIMIT_CORE), R.getrlimit(R.RLIMIT_FSIZE))"
    )
    r = tool.run({"code": code}, _ctx(tmp_path, python_memory_mb=300))
    mib = 1024 * 1024
    assert r.content == f"({300 * mib}, {300 * mib}) (256, 256) (0, 0) ({64 * mib}, {64 * mib})"


def test_no_output_hint_and_site_builtins(tool: PythonTool, tmp_path: Path) -> None:
    r = tool.run({"code": "x = 1"}, _ctx(tmp_path))
    assert not r.is_error
    assert "print()" in r.content
    r = tool.run({"code": "print('bye')\nexit(0)"}, _ctx(tmp_path))
    assert not r.is_error
    assert r.content == "bye"


def test_runs_under_main_with_real_interpreter(tool: PythonTool, tmp_path: Path) -> None:
    # The interpreter must exist where the code sees it (in the sandbox, a virtual environment under
    # /work or /tmp is seen at a stash path), so that ``subprocess.run([sys.executable, ...])`` works.
    code = (
        "import os, sys\nif __name__ == '__main__':\n"
        "    print(sys.executable, sys.flags.isolated, os.path.exists(sys.executable))"
    )
    r = tool.run({"code": code}, _ctx(tmp_path))
    exe, isolated, exists = r.content.split()
    assert "shims" not in exe
    assert exists == "True"
    assert isolated == "1"


def test_a_call_works_in_a_process_holding_more_than_1024_descriptors(tool: PythonTool, tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # what a busy worker may hold
    try:
        r = tool.run({"code": "print('past FD_SETSIZE')"}, _ctx(tmp_path))
        assert not r.is_error and "past FD_SETSIZE" in r.content
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
