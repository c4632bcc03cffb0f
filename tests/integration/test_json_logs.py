"""SWARM_LOG_FORMAT=json in real processes: every line a worker node's Celery processes log is one JSON
object, and the lines about a step (Celery's own "succeeded" line included) carry the run's and the
step's ids; `swarm serve` (the API under uvicorn) logs JSON lines only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from swarm.dispatch.celery import CeleryDispatcher
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import Proc, cluster, submit, w1_task, wait_done
from tests.conftest import make_settings
from workers.launch import NodePlan


def _records(path: Path) -> list[dict[str, object]]:
    lines = path.read_text(errors="replace").splitlines()
    assert lines, f"{path.name} is empty"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: not a JSON line: {line!r}") from None
    return records


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(180)
def test_a_worker_node_logs_json_lines_that_carry_the_run(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=2)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    logs: list[Path] = []
    try:
        with cluster(tmp_path / "cluster", s, SWARM_LOG_FORMAT="json") as c:
            # Given an LLM worker (threads pool) and a tool worker (prefork) logging at INFO, their
            # log (stderr) apart from what Celery prints to the terminal (stdout)
            plan = NodePlan(queues=("llm", "tool"), llm_concurrency=4, tool_concurrency=1, name="json", loglevel="INFO")
            for i, cmd in enumerate(plan.commands()):
                log, out = c.root / f"worker-{i}.log", c.root / f"worker-{i}.out"
                with log.open("wb") as err_file, out.open("wb") as out_file:
                    popen = subprocess.Popen(
                        cmd,
                        cwd=c.root,
                        env=c.env,
                        stdout=out_file,
                        stderr=err_file,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                c.procs.append(Proc(f"worker-{i}", popen, log))
                logs.append(log)
            # When a run goes through them
            run_id = submit(store, dispatcher, s, w1_task(2, 1), agents=2, tools=1)
            assert wait_done(store, run_id, 120, c).status == "succeeded"
            c.stop(c.procs)
        with store.read() as conn:
            step_ids = set(conn.execute(select(Step.id).where(Step.run_id == run_id)).scalars())
    finally:
        dispatcher.close()
        store.engine.dispose()

    # Then every line of both logs is JSON
    records = [r for path in logs for r in _records(path)]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    # ...and each step's task line names the run, its agent and the step
    done = [
        r
        for r in records
        if str(r["message"]).startswith(("Task swarm.llm[", "Task swarm.tool.")) and "succeeded" in str(r["message"])
    ]
    assert {r.get("run_id") for r in done} == {run_id}
    assert all(r.get("agent_id") for r in done)
    assert {r.get("step_id") for r in done} == step_ids


@pytest.mark.timeout(120)
def test_the_api_server_logs_json_lines(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "CELERY_"))}
    env |= {"SWARM_HOME": str(tmp_path / "home"), "SWARM_LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    with log.open("wb") as err_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "swarm", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "swarm serve did not start"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    records = _records(log)
    loggers = {r["logger"] for r in records}
    assert {"swarm.api", "uvicorn.error"} <= loggers  # swarm's lines and uvicorn's own
    assert any(str(r["message"]).startswith("GET /healthz 200") for r in records)  # the request log
