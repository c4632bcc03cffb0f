"""The `swarm` command as a user's script sees it: one exit-code table, JSON errors with --json, and
Ctrl-C that stops a run at once with a line saying how to go on — a real process each time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from swarm.store.store import StateStore
from tests.conftest import make_settings


def swarm(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args], env=_env(tmp_path), capture_output=True, text=True, timeout=timeout
    )


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    return {**env, "SWARM_HOME": str(tmp_path)}


def test_usage_errors_have_their_own_exit_code(tmp_path):
    bad_option = swarm(tmp_path, "ls", "--bogus")
    assert bad_option.returncode == 64 and "No such option" in bad_option.stderr
    bad_status = swarm(tmp_path, "ls", "--status", "bogus", "--json")
    assert bad_status.returncode == 64
    error = json.loads(bad_status.stdout)
    assert error["error"] == "usage" and "'bogus' is not one of" in error["message"]


def test_errors_are_json_with_json_and_keep_their_codes(tmp_path):
    missing = swarm(tmp_path, "show", "f" * 32, "--json")
    assert missing.returncode == 2
    assert json.loads(missing.stdout) == {"error": "not_found", "message": missing_message("f" * 32), "exit_code": 2}
    text = swarm(tmp_path, "show", "f" * 32)
    assert text.returncode == 2 and text.stdout == "" and "no run" in text.stderr


def missing_message(run_id: str) -> str:
    return f"no run '{run_id}'; `swarm ls` lists runs"


def test_watch_exits_4_when_the_run_did_not_succeed(tmp_path, sim):
    from swarm.runtime import open_store, run_spec

    s = make_settings(tmp_path, "", sim.url)
    store = open_store(s)
    run_id, _ = store.create_run(run_spec(s, "t"))
    assert store.cancel_run(run_id)
    store.engine.dispose()
    watched = swarm(tmp_path, "watch", run_id, "--json")
    assert watched.returncode == 4, watched.stderr
    assert json.loads(watched.stdout.splitlines()[-1])["type"] == "run_done"


@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_run_at_once_and_says_how_to_resume_it(tmp_path, sim):
    env = {**_env(tmp_path), "SWARM_LLM_BASE_URL": sim.url}
    task = "interrupted #sim agents=8 tools=4 tool=echo latency=0.3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "run", task], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    db = StateStore.from_url(f"sqlite:///{tmp_path / 'swarm.db'}")
    try:
        run_id = _wait_for_calls(db, 10)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert stopped_in < 2.0, f"Ctrl-C took {stopped_in:.1f} s"
    assert f"continue it with `swarm resume {run_id}`" in err
    assert "Traceback" not in err and "retry" not in err.lower()

    resumed = subprocess.run(
        [sys.executable, "-m", "swarm", "resume", run_id, "--json"], env=env, capture_output=True, text=True, timeout=90
    )
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded" and done["subagents"] == 8 and done["tool_calls"] == 8 * 4


def _wait_for_calls(db: StateStore, calls: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            runs = db.list_runs(limit=1)
        except Exception:  # the process has not created the schema yet
            continue
        if runs and runs[0].llm_calls >= calls:
            return runs[0].id
    raise AssertionError("the run never got going")


F = "f" * 32
DOWN = {"SWARM_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
BAD_CONFIG = {"SWARM_LEASE_SECONDS": "abc"}

#: (arguments, extra environment, exit code, error kind): each command made to fail, with --json.
FAILING_WITH_JSON = [
    (["ls", "--status", "bogus"], {}, 64, "usage"),
    (["ls"], DOWN, 1, "error"),
    (["ls"], BAD_CONFIG, 1, "error"),
    (["show", F], {}, 2, "not_found"),
    (["show", F], DOWN, 1, "error"),
    (["watch", F], {}, 2, "not_found"),
    (["run", ""], {}, 64, "usage"),
    (["resume", F], {}, 2, "not_found"),
    (["fork", F, "--at", "x"], {}, 2, "not_found"),
    (["cancel", F], {}, 2, "not_found"),
    (["approvals", F], {}, 2, "not_found"),
    (["approvals"], DOWN, 1, "error"),
    (["approve", F], {}, 2, "not_found"),
    (["reject", F, "--reason", "no"], {}, 2, "not_found"),
    (["files", F], {}, 2, "not_found"),
    (["delete", F], {}, 2, "not_found"),
    (["prune", "--older-than", "soon"], {}, 3, "invalid"),
    (["prune", "--older-than", "1d", "--status", "running"], {}, 3, "invalid"),
    (["keys", "create", "--expires-in", "soon"], {}, 3, "invalid"),
    (["keys", "list"], DOWN, 1, "error"),
    (["keys", "revoke", "nope"], {}, 2, "not_found"),
    (["db", "upgrade", "bogus"], {}, 3, "invalid"),
    (["db", "current"], DOWN, 1, "error"),
    (["worker", "--check"], BAD_CONFIG, 1, "error"),
    (["worker", "--check"], {}, 1, "error"),  # no broker configured
    (["doctor"], BAD_CONFIG, 1, "error"),
    (["demo", "--agents", "-1"], {}, 64, "usage"),
    (["demo", "--tool", "bogus"], {}, 64, "usage"),
]


@pytest.mark.parametrize(
    ("args", "env", "code", "kind"), FAILING_WITH_JSON, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_a_failing_command_with_json_prints_one_json_error(tmp_path, args, env, code, kind):
    out = subprocess.run(
        [sys.executable, "-m", "swarm", *args, "--json"],
        env={**_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == code, (out.stdout, out.stderr)
    error = json.loads(out.stdout)  # stdout is the JSON error and nothing else; no traceback
    assert (error["error"], error["exit_code"]) == (kind, code) and error["message"], error
    assert "Traceback" not in out.stderr, out.stderr
