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

from swarm.store.store import StateStore


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
