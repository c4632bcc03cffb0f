"""`swarm executor` as its own process over real HTTP: python tool calls of a worker with
SWARM_PYTHON_EXECUTOR_URL run there (in its sandbox), files travel both ways, and an executor that
refuses or is gone is a tool error for the model, never a crashed worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swarm.config import Settings
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.store import StateStore
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool
from tests.conftest import make_settings

TOKEN = "executor-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executor_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any SWARM_* setting (none leaks in from the developer's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(SWARM_HOME=str(home), **extra)
    return env


class Executor:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def calls(self) -> int:
        return self.log.read_text().count("python call ")


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    home = tmp_path_factory.mktemp("executor")
    port = _free_port()
    log = home / "executor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "executor", "--host", "127.0.0.1", "--port", str(port)],
            env=_executor_env(home, SWARM_EXECUTOR_TOKEN=TOKEN, SWARM_PYTHON_TIMEOUT="10"),
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Executor(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _call(code: str, workspace: Path, **overrides: object) -> tuple[str, bool]:
    values: dict[str, object] = {"home": workspace.parent, "python_timeout": 10.0, **overrides}
    s = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    ctx = ToolContext(run_id="run1", agent_id="agent1", step_id="step1", workspace=workspace, settings=s)
    result = PythonTool().run({"code": code}, ctx)
    return result.content, result.is_error


def test_workspace_files_round_trip_through_the_executor(executor: Executor, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "in.csv").write_text("a,b\n1,2\n")
    (ws / "keep.txt").write_text("unchanged")
    (ws / "edit.txt").write_text("old")
    before = executor.calls()
    code = (
        "import os, pathlib\n"
        "print(pathlib.Path('data/in.csv').read_text().splitlines()[1])\n"
        "pathlib.Path('out').mkdir()\n"
        "pathlib.Path('out/result.txt').write_text('sum=3')\n"
        "pathlib.Path('edit.txt').write_text('new')\n"
        "print(sorted(os.listdir('.')))\n"
    )
    content, is_error = _call(code, ws, python_executor_url=executor.url, executor_token=TOKEN)

    assert not is_error, content
    assert content.splitlines() == ["1,2", "['data', 'edit.txt', 'keep.txt', 'out']"]
    assert (ws / "out" / "result.txt").read_text() == "sum=3"
    assert (ws / "edit.txt").read_text() == "new"
    assert (ws / "keep.txt").read_text() == "unchanged"
    assert executor.calls() == before + 1  # it ran there, not in this process


def test_executor_runs_code_in_its_sandbox_with_its_limits(executor: Executor, tmp_path: Path) -> None:
    """A failing call comes back as the tool's own error; the code sees no network."""
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('network')\n"
        "except OSError:\n"
        "    print('no network')\n"
        "raise SystemExit(3)\n"
    )
    content, is_error = _call(code, tmp_path / "ws", python_executor_url=executor.url, executor_token=TOKEN)
    assert is_error
    assert "no network" in content and "exit code 3" in content


def test_wrong_token_is_a_tool_error_and_nothing_runs(executor: Executor, tmp_path: Path) -> None:
    before = executor.calls()
    ws = tmp_path / "ws"
    content, is_error = _call("open('x', 'w').write('1')", ws, python_executor_url=executor.url, executor_token="wrong")
    assert is_error
    assert "python executor is unavailable" in content and "token" in content
    assert not (ws / "x").exists()
    assert executor.calls() == before
    content, is_error = _call("print(1)", ws, python_executor_url=executor.url)  # no token at all
    assert is_error and "token" in content


def test_unreachable_executor_is_a_tool_error(tmp_path: Path) -> None:
    content, is_error = _call(
        "print(1)", tmp_path / "ws", python_executor_url=f"http://127.0.0.1:{_free_port()}", executor_token=TOKEN
    )
    assert is_error
    assert "python executor is unavailable" in content


def test_executor_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "executor", "--host", "0.0.0.0", "--port", str(_free_port())],
        env=_executor_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "SWARM_EXECUTOR_TOKEN" in out.stdout + out.stderr


def test_executor_refuses_to_start_where_bubblewrap_cannot_sandbox(tmp_path: Path) -> None:
    env = _executor_env(tmp_path, SWARM_EXECUTOR_TOKEN=TOKEN, PATH=str(tmp_path))  # no bwrap on PATH
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "executor", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "bubblewrap" in out.stdout + out.stderr


@pytest.mark.timeout(240)
def test_engine_run_with_python_on_the_executor_finishes_with_its_files(
    executor: Executor, tmp_path: Path, sqlite_url: str, sim
) -> None:
    """Each python step reads the file the previous one wrote: workspace files go worker → executor
    → worker → database across steps, and every call ran in the executor."""
    s = make_settings(tmp_path, sqlite_url, sim.url, python_executor_url=executor.url, executor_token=TOKEN)
    store = StateStore.from_url(sqlite_url)
    before = executor.calls()
    try:
        with LocalRuntime(s, store=store) as rt:
            # One subagent: its three calls run in order, each reading the file the one before wrote.
            run_id = rt.submit(run_spec(s, "t #sim agents=1 tools=3 tool=python scenario=files"))
            summary = rt.wait(run_id, timeout=180)
        assert summary.status == "succeeded", summary.reason
        assert (summary.subagents, summary.tool_calls) == (1, 3)
        assert "1 ok, 0 errors" in (summary.result or "")
        assert store.artifacts(run_id)["notes/1_2.txt"][1] == b"step 0;step 1;step 2;"
        assert executor.calls() == before + 3
    finally:
        store.engine.dispose()


def test_worker_check_needs_no_local_sandbox_when_calls_go_to_an_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.tools import sandbox_spec
    from swarm.tools.executor import python_report

    def no_local_probe(*_: object) -> dict[str, object]:
        raise AssertionError("a worker with an executor must not need bubblewrap itself")

    monkeypatch.setattr(sandbox_spec, "isolation_report", no_local_probe)
    report = python_report(Settings(_env_file=None, python_executor_url="http://executor:8790"))
    assert report["available"] is True and report["python_isolation"] == "executor"
    assert "http://executor:8790" in str(report["detail"])
