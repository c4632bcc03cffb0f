"""`swarm run` killed with SIGKILL mid-run, then `swarm resume`: the run finishes with exact counts
and no committed LLM call is ever requested again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from sqlalchemy import select

from swarm.store.models import Step
from swarm.store.store import StateStore


def swarm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarm", *args]


@pytest.mark.timeout(180)
def test_kill9_then_resume_finishes_with_zero_repeated_committed_calls(tmp_path, sim):
    env = {
        **os.environ,
        "SWARM_HOME": str(tmp_path),
        "SWARM_LLM_BASE_URL": sim.url,
        "SWARM_DATABASE_URL": "",
        "SWARM_BROKER_URL": "",
    }
    db = StateStore.from_url(f"sqlite:///{tmp_path / 'swarm.db'}")
    task = "kill test #sim agents=20 tools=5 tool=echo latency=0.1"
    proc = subprocess.Popen(swarm_cmd("run", task, "--json"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if (tmp_path / "swarm.db").exists():
                try:
                    runs = db.list_runs(limit=1)
                except Exception:  # schema not created yet
                    continue
                if runs and runs[0].llm_calls >= 40:
                    run_id = runs[0].id
                    break
        assert run_id, "the run never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()

    before = db.run_summary(run_id)
    assert before.status == "running"  # nobody had the chance to record anything else
    assert 0 < before.llm_calls < 123
    with db.read() as conn:
        committed = {
            r.id
            for r in conn.execute(
                select(Step.id).where(Step.run_id == run_id, Step.kind == "llm", Step.status == "succeeded")
            )
        }

    out = subprocess.run(swarm_cmd("resume", run_id, "--json"), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "succeeded"
    assert (summary["subagents"], summary["tool_calls"], summary["llm_calls"]) == (20, 100, 3 + 20 * 6)
    assert summary["critical_steps"] == 1 + (1 + 6) + 1

    requests_per_step: dict[str, int] = defaultdict(int)
    for entry in sim.log(run_id):
        if entry["status"] == 200:
            requests_per_step[entry["step_id"]] += 1
    # Every committed LLM step was requested exactly once, before and after the crash.
    assert committed and all(requests_per_step[s] == 1 for s in committed)
    # Only steps in flight at the kill were asked again (their answers were never committed).
    repeated = [s for s, n in requests_per_step.items() if n > 1]
    assert not set(repeated) & committed
    assert len(repeated) <= 20
    assert len(requests_per_step) == 123
    assert killed_at < time.time()
