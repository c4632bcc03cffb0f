"""A run whose process was killed with SIGKILL shows as ``interrupted`` (not ``running`` forever)
in `swarm ls` and `swarm show`, with the hint to resume it; `swarm resume` finishes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from swarm.api.testing import live_api
from swarm.store.store import StateStore
from tests.conftest import make_settings


def swarm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swarm", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(180)
def test_a_run_whose_process_was_killed_shows_interrupted_until_resumed(tmp_path, sim):
    env = {
        **os.environ,
        "SWARM_HOME": str(tmp_path),
        "SWARM_LLM_BASE_URL": sim.url,
        "SWARM_DATABASE_URL": "",
        "SWARM_BROKER_URL": "",
        "SWARM_API_URL": "",
        # The owner lease lapses 2 s after the heartbeat stops (default 10 s).
        "SWARM_LEASE_SECONDS": "2",
        "SWARM_HEARTBEAT_SECONDS": "0.5",
        "COLUMNS": "200",
    }
    db = StateStore.from_url(f"sqlite:///{tmp_path / 'swarm.db'}")
    task = "interrupt me #sim agents=6 tools=4 tool=echo latency=2"
    cmd = [sys.executable, "-m", "swarm", "run", task, "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, run_id = time.monotonic() + 60, None
        while time.monotonic() < deadline and run_id is None:
            time.sleep(0.1)
            try:
                runs = db.list_runs(limit=1) if (tmp_path / "swarm.db").exists() else []
            except Exception:  # schema not created yet
                continue
            if runs and runs[0].llm_calls >= 3:
                run_id = runs[0].id
        assert run_id, "the run never got going"
        alive = db.run_summary(run_id)  # (read in-process: quick enough on a loaded machine)
        assert (alive.status, alive.state, alive.hint) == ("running", "running", None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()

    time.sleep(2.5)  # the owner lease lapses
    listed = json.loads(swarm(env, "ls", "--json").stdout)
    # The stored status is unchanged: "interrupted" is what readers are shown, derived.
    assert (listed[0]["id"], listed[0]["status"], listed[0]["state"]) == (run_id, "running", "interrupted")
    shown = swarm(env, "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert "interrupted" in shown.stdout and f"swarm resume {run_id}" in " ".join(shown.stdout.split())
    table = swarm(env, "ls").stdout
    assert any(line.split()[:2] == [run_id, "interrupted"] for line in table.splitlines()), table

    out = swarm(env, "resume", run_id, "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert (done["status"], done["state"], done["hint"]) == ("succeeded", "succeeded", None)


def _start_and_kill(tmp_path, env: dict[str, str], db: StateStore, task: str) -> tuple[str, subprocess.Popen[str]]:
    """Start `swarm run` in a subprocess, start `swarm watch --json` on its run, then SIGKILL
    the run's process: the run is left stored ``running`` with nothing working on it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "run", task, "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watcher: subprocess.Popen[str] | None = None
    try:
        deadline, run_id = time.monotonic() + 60, None
        while time.monotonic() < deadline and run_id is None:
            time.sleep(0.1)
            try:
                runs = db.list_runs(limit=1) if (tmp_path / "swarm.db").exists() else []
            except Exception:  # schema not created yet
                continue
            if runs and runs[0].llm_calls >= 2:
                run_id = runs[0].id
        assert run_id, "the run never got going"
        watcher = subprocess.Popen(
            [sys.executable, "-m", "swarm", "watch", run_id, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # the watcher is following
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return run_id, watcher


@pytest.mark.timeout(180)
def test_watch_stops_on_an_interrupted_run_and_status_filters_tell_it_from_running(tmp_path, sim):
    env = {
        **os.environ,
        "SWARM_HOME": str(tmp_path),
        "SWARM_LLM_BASE_URL": sim.url,
        "SWARM_DATABASE_URL": "",
        "SWARM_BROKER_URL": "",
        "SWARM_API_URL": "",
        "SWARM_LEASE_SECONDS": "2",
        "SWARM_HEARTBEAT_SECONDS": "0.5",
    }
    db = StateStore.from_url(f"sqlite:///{tmp_path / 'swarm.db'}")
    run_id, watcher = _start_and_kill(tmp_path, env, db, "watch me #sim agents=6 tools=4 tool=echo latency=2")
    try:
        # The lease lapses in 2 s; the watcher reads the state every 2 s and needs it twice.
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 5, (out, err)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line is JSON
    assert lines[-1]["error"] == "run_interrupted" and lines[-1]["exit_code"] == 5
    assert f"swarm resume {run_id}" in lines[-1]["message"]

    live = swarm(env, "watch", run_id)  # started on an already interrupted run: stops too
    assert live.returncode == 5 and f"swarm resume {run_id}" in " ".join(live.stderr.split()), live.stderr

    # `--status` filters on what is shown: interrupted lists it, running does not.
    interrupted = json.loads(swarm(env, "ls", "--status", "interrupted", "--json").stdout)
    assert [r["id"] for r in interrupted] == [run_id]
    assert json.loads(swarm(env, "ls", "--status", "running", "--json").stdout) == []
    assert db.list_runs(state="running") == [] and db.list_runs(status="running")[0].id == run_id

    # The same through the API (a server on the same database; the run has no tenant, so the
    # server does not adopt it), and `swarm watch` against it stops the same way.
    with live_api(make_settings(tmp_path, f"sqlite:///{tmp_path / 'swarm.db'}", sim.url), store=db) as api:
        admin = api.key("ops", admin=True)
        with api.client(admin) as http:
            listed = http.get("/v1/runs", params={"status": "interrupted"}).json()["runs"]
            assert [r["id"] for r in listed] == [run_id]
            assert http.get("/v1/runs", params={"status": "running"}).json()["runs"] == []
        remote = swarm({**env, "SWARM_API_URL": api.url, "SWARM_API_KEY": admin}, "watch", run_id, "--json")
        assert remote.returncode == 5, (remote.stdout, remote.stderr)
        assert json.loads(remote.stdout.splitlines()[-1])["error"] == "run_interrupted"

    out = swarm(env, "resume", run_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(swarm(env, "ls", "--status", "interrupted", "--json").stdout) == []
