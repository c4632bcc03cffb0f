"""The distributed CLI path, all through subprocesses: a plain `swarm worker` runs the node,
`swarm run` submits to the cluster and follows progress from the database, `swarm show --json`
gives the same summary as the embedded mode does for the same task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from tests.acceptance.cluster import cluster
from tests.conftest import PG_ADMIN_URL, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: An idle node's stop after Ctrl-C (measured ~4 s on the shared 2-core box; 34 s before).
IDLE_STOP_BOUND = 8.0

TASK = "CLI check #sim agents=6 tools=3 tool=echo latency=0.01"
SAME = (
    "status",
    "subagents",
    "llm_calls",
    "tool_calls",
    "critical_steps",
    "total_steps",
    "result",
    "max_subagents",
    "max_tool_calls",
    "tokens_in",
    "tokens_out",
)


def swarm(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.timeout(240)
def test_swarm_run_on_the_cluster_matches_embedded(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    with cluster(tmp_path / "cluster", s) as c:
        env = c.env
        ok = swarm(env, "worker", "--check", "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["ok"] is True
        # The real wrapper: llm + tool workers (each a sweeper candidate), supervised.
        node = c._spawn(
            "node",
            [
                sys.executable,
                "-m",
                "swarm",
                "worker",
                "--llm-concurrency",
                "16",
                "--tool-concurrency",
                "2",
                "--loglevel",
                "WARNING",
            ],
        )

        out = swarm(env, "run", TASK, "--json")
        assert out.returncode == 0, out.stderr + c.logs()
        cluster_run = json.loads(out.stdout)
        assert cluster_run["status"] == "succeeded"
        assert (cluster_run["subagents"], cluster_run["tool_calls"], cluster_run["llm_calls"]) == (6, 18, 27)

        shown = swarm(env, "show", cluster_run["id"], "--json")
        assert shown.returncode == 0, shown.stderr
        shown_run = json.loads(shown.stdout)
        assert {k: shown_run[k] for k in cluster_run} == cluster_run
        assert len(shown_run["agents"]) == 7

        detached = swarm(env, "run", TASK, "--detach", "--json")
        assert detached.returncode == 0, detached.stderr
        run_id = json.loads(detached.stdout)["id"]
        deadline = time.monotonic() + 60
        while (st := json.loads(swarm(env, "show", run_id, "--json").stdout))["status"] == "running":
            assert time.monotonic() < deadline, "detached run did not finish"
            time.sleep(0.5)
        assert st["status"] == "succeeded"

        # Idle now. Ctrl-C in the node's terminal (SIGINT to its whole process group) is a warm
        # shutdown done within seconds; it used to be a cold one that waited 30 s with nothing to do.
        t0 = time.monotonic()
        os.killpg(node.pid, signal.SIGINT)
        code = node.popen.wait(timeout=60)
        stopped = time.monotonic() - t0
        print(f"\n[cli] idle `swarm worker` node stopped {stopped:.2f} s after Ctrl-C")
        assert code == 0 and stopped <= IDLE_STOP_BOUND, (code, stopped, node.tail())
        assert "Soft Shutdown" not in node.log.read_text(errors="replace")

    embedded_env = {**env, "SWARM_DATABASE_URL": "", "SWARM_BROKER_URL": "", "SWARM_HOME": str(tmp_path / "emb")}
    emb = swarm(embedded_env, "run", TASK, "--json")
    assert emb.returncode == 0, emb.stderr
    embedded_run = json.loads(emb.stdout)
    assert set(embedded_run) == set(cluster_run)
    assert {k: embedded_run[k] for k in SAME} == {k: cluster_run[k] for k in SAME}


@pytest.mark.timeout(120)
def test_worker_refuses_an_unmigrated_database(tmp_path, redis_url, sim):
    name = f"swarm_empty_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        s = make_settings(tmp_path, url, sim.url, broker_url=redis_url)
        with cluster(tmp_path / "cluster", s) as c:
            check = swarm(c.env, "worker", "--check")
            assert check.returncode != 0
            assert "swarm db upgrade" in check.stderr.replace("\n", " ")
            # Plain `celery -A workers worker` refuses too, before taking any task.
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    "swarm.llm",
                    "--without-mingle",
                    "--without-gossip",
                ],
                env=c.env,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=tmp_path,
            )
            assert proc.returncode != 0
            assert "swarm db upgrade" in proc.stderr
            no_broker = swarm({**c.env, "SWARM_BROKER_URL": ""}, "worker", "--check")
            assert no_broker.returncode != 0 and "SWARM_BROKER_URL" in no_broker.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_worker_dry_run_plans_one_process_per_pool(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    out = swarm(
        {**env, "SWARM_HOME": str(tmp_path)},
        "worker",
        "--queues",
        "llm,tool",
        "--llm-concurrency",
        "100",
        "--tool-concurrency",
        "3",
        "--dry-run",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    cmds = json.loads(out.stdout)["commands"]
    joined = [" ".join(c) for c in cmds]
    assert any("-P threads -c 100 -Q swarm.llm" in c for c in joined)
    assert any("-P prefork -c 3 -Q swarm.tool" in c for c in joined)
    assert len(cmds) == 2  # no beat, no control worker: every worker process is a sweeper candidate
    # The retired --beat and control queue: accepted with a warning, nothing more started.
    old = swarm({**env, "SWARM_HOME": str(tmp_path)}, "worker", "--queues", "llm,tool,control", "--beat", "--dry-run")
    assert old.returncode == 0 and "retired" in old.stderr and len(old.stdout.strip().splitlines()) == 2
    only = swarm({**env, "SWARM_HOME": str(tmp_path)}, "worker", "--queues", "control", "--beat", "--dry-run")
    assert only.returncode != 0 and "retired" in only.stderr
    bad = swarm({**env, "SWARM_HOME": str(tmp_path)}, "worker", "--queues", "gpu", "--dry-run")
    assert bad.returncode != 0 and "unknown queue" in bad.stderr
