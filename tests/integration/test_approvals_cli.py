"""The approval commands on the embedded database: a run waits in one process (as `swarm run`
would), another process's CLI lists and decides its tool calls; the run's own sweeper picks the
decision up."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

import swarm.cli.approvals
import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.cli.common import app
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.store import StateStore
from tests.conftest import make_settings


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_the_cli_lists_and_decides_once_and_the_running_process_continues(tmp_path, sqlite_url, sim, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    s = make_settings(tmp_path, sqlite_url, sim.url, sweep_interval=0.2, republish_after=0.5)
    store = StateStore.from_url(sqlite_url)
    try:
        with LocalRuntime(s, store=store) as rt:
            task = "t " + call_directive("echo", {"text": "hi"})
            approved = rt.submit(run_spec(s, task, approve_tools=["echo"]))
            rejected = rt.submit(run_spec(s, task, approve_tools=["ech?"]))
            deadline = time.monotonic() + 20
            while len(store.approvals.find(pending=True)) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)

            code, out = cli("approvals", "--json")
            assert code == 0, out
            listed = {a["run_id"]: a for a in json.loads(out)}
            assert set(listed) == {approved, rejected}
            code, out = cli("approvals", approved[:8])
            assert code == 0 and "echo" in out and "swarm approve" in out

            code, out = cli("approve", listed[approved]["step_id"][:12], "--note", "fine")
            assert code == 0 and "approved" in out, out
            code, out = cli("reject", listed[rejected]["step_id"], "--reason", "not today", "--json")
            assert code == 0 and json.loads(out)["status"] == "rejected", out

            code, out = cli("approve", listed[rejected]["step_id"], "--json")
            assert code == 3 and json.loads(out)["error"] == "invalid" and "already rejected" in out
            code, out = cli("approve", "ffffffffff")
            assert code == 2 and "swarm approvals" in out

            ok, no = rt.wait(approved, timeout=30), rt.wait(rejected, timeout=30)
        assert ok.status == "succeeded" and "hi" in (ok.result or "")
        assert no.status == "succeeded" and "not today" in (no.result or "")
        code, out = cli("approvals", approved, "--all", "--json")
        assert code == 0 and [a["status"] for a in json.loads(out)] == ["approved"]
    finally:
        store.engine.dispose()


def test_bad_approve_patterns_are_refused_before_anything_runs(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    code, out = cli("run", "x", "--approve", "python;rm -rf", "--json")
    assert code == 3 and "not a tool name or pattern" in out


def test_swarm_run_says_which_calls_wait_and_how_to_decide(tmp_path, sqlite_url, sim, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.setenv("SWARM_LLM_BASE_URL", sim.url)
    monkeypatch.setenv("SWARM_APPROVAL_TIMEOUT", "1")  # nobody decides: it expires, the run goes on
    monkeypatch.setenv("SWARM_SWEEP_INTERVAL", "0.2")
    result = CliRunner().invoke(app, ["run", "t " + call_directive("echo", {"text": "x"}), "--approve", "echo"])
    assert result.exit_code == 0, result.output
    assert "calls of echo wait for your decision: `swarm approvals" in result.output
    assert "approval expired" in result.output
