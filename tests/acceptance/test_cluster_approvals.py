"""An approval survives every process: on a real cluster (Celery worker processes, the API server as
its own process, PostgreSQL, Redis, the simulated model over HTTP) a python call waits for approval;
every worker and the API server are killed with SIGKILL and started again; the call is then
approved through the restarted server by the CLI, runs exactly once, and the run finishes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import redis
from sqlalchemy import select

from swarm.sim.params import call_directive
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import Cluster, Proc, cluster, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: Appends one line to a workspace file each time it runs: the file counts the runs.
CODE = "with open('ledger.txt', 'a') as f:\n    f.write('ran\\n')\nprint('appended')"


@pytest.fixture
def broker_url(redis_url):
    """A Redis database of its own (the task's db), flushed."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(c: Cluster, port: int) -> Proc:
    proc = c._spawn("api", [sys.executable, "-m", "swarm", "serve", "--port", str(port), "--log-level", "warning"])
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.running() and time.monotonic() < deadline, f"the API server did not start\n{proc.tail()}"
        time.sleep(0.2)


def kill9(procs: list[Proc]) -> None:
    """SIGKILL every process (and its pool children), as a machine losing power would."""
    for p in procs:
        for pid in p.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        p.popen.wait(timeout=10)


@pytest.mark.timeout(300)
def test_an_approval_survives_killing_every_process_and_the_call_runs_once(tmp_path, pg_url, broker_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=broker_url, sweep_interval=0.5, republish_after=2.0)
    store = StateStore.from_url(pg_url)
    _, key = store.create_key("acme")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with cluster(tmp_path / "cluster", s) as c:
            procs = c.start_node("a", llm_concurrency=4, tool_concurrency=1)
            api = start_api(c, port)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                body = {"task": "append " + call_directive("python", {"code": CODE}), "approve_tools": ["python"]}
                run_id = http.post("/v1/runs", json=body).json()["id"]
                deadline = time.monotonic() + 90
                while not (found := http.get(f"/v1/runs/{run_id}/approvals").json()["approvals"]):
                    assert time.monotonic() < deadline, c.logs()
                    c.check_alive()
                    time.sleep(0.1)
            (req,) = found
            assert (req["tool"], req["status"]) == ("python", "pending")

            kill9([*procs, api])
            time.sleep(3.0)  # past republish_after: nothing may have picked the call up meanwhile
            c.start_node("b", llm_concurrency=4, tool_concurrency=1)
            start_api(c, port)
            assert store.run_summary(run_id).status == "running"
            with store.read() as conn:
                status, attempt = conn.execute(select(Step.status, Step.attempt).where(Step.id == req["step_id"])).one()
            assert (status, attempt) == ("awaiting_approval", 0)

            # The CLI, against the restarted server, with the step id typed short.
            env = {**c.env, "SWARM_API_URL": url, "SWARM_API_KEY": key}
            listed = subprocess.run(
                [sys.executable, "-m", "swarm", "approvals", "--json"], env=env, capture_output=True, text=True
            )
            assert listed.returncode == 0, listed.stderr
            assert req["step_id"] in listed.stdout
            cmd = [sys.executable, "-m", "swarm", "approve", req["step_id"][:10], "--note", "looks safe", "--json"]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            assert out.returncode == 0, out.stdout + out.stderr
            again = subprocess.run(cmd, env=env, capture_output=True, text=True)
            assert again.returncode == 3 and "already approved" in again.stdout, again.stdout + again.stderr

            done = wait_done(store, run_id, 120, c)
            assert done.status == "succeeded", (done.reason, c.logs())
            assert "appended" in (done.result or "")
            ledger = store.artifacts(run_id)["ledger.txt"][1]
            assert ledger == b"ran\n", ledger  # the tool ran exactly once
            with store.read() as conn:
                attempt = conn.execute(select(Step.attempt).where(Step.id == req["step_id"])).scalar_one()
            assert attempt == 1
    finally:
        store.engine.dispose()
