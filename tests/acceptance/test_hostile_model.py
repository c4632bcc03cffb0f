"""A hostile model against swarm: each probe is a ``python`` tool call issued by the simulator over
HTTP, on the embedded default (``swarm run`` as its own process, SQLite, secrets in its environment)
and on a Celery worker node (PostgreSQL, Redis). Every probe must be refused, contained or killed,
and swarm must finish the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from swarm.dispatch.celery import CeleryDispatcher
from swarm.store.store import StateStore
from tests.acceptance import hostile
from tests.acceptance.cluster import cluster, submit, wait_done
from tests.conftest import make_settings

SECRET = "sk-hostile-test-secret"


def _embedded(tmp_path: Path, sim_url: str, code: str, timeout: float = 120) -> tuple[dict[str, object], Path]:
    home, svc = tmp_path / "home", tmp_path / "svc"
    svc.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWARM_")},
        "SWARM_HOME": str(home),
        "SWARM_LLM_BASE_URL": sim_url,
        "SWARM_LLM_API_KEY": SECRET,
        "SWARM_PYTHON_TIMEOUT": "10",
    }
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "run", hostile.task(code), "--json"],
        cwd=svc,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout), home


def _answer(run: dict[str, object]) -> str:
    assert run["status"] == "succeeded", run
    text = str(run["result"])
    assert "Tool python returned:" in text, text
    return text


def _marked_alive(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_model_code_cannot_read_the_embedded_database(tmp_path, sim):
    run, home = _embedded(tmp_path, sim.url, hostile.read_file(tmp_path / "home" / "swarm.db"))
    assert (home / "swarm.db").exists()
    assert "BLOCKED" in _answer(run)


@pytest.mark.parametrize("port", [5432, 6379])
def test_model_code_cannot_reach_postgres_or_redis(tmp_path, sim, port):
    run, _ = _embedded(tmp_path, sim.url, hostile.connect(port))
    assert "BLOCKED" in _answer(run)


def test_model_code_sees_no_secret_in_proc(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.ENVIRON)
    answer = _answer(run)
    assert "BLOCKED" in answer
    assert SECRET not in answer


def test_model_code_cannot_see_other_workspaces(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.OTHER_WORKSPACES)
    assert "BLOCKED" in _answer(run)


def test_model_code_cannot_write_a_dotenv_into_the_service_directory(tmp_path, sim):
    target = tmp_path / "svc" / ".env"
    run, _ = _embedded(tmp_path, sim.url, hostile.write_file(target))
    assert "BLOCKED" in _answer(run)
    assert not target.exists()


def test_model_code_cannot_write_outside_its_workspace(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.WRITE_OUTSIDE)
    assert "BLOCKED" in _answer(run)
    assert not Path("/var/tmp/x").exists()


def test_a_double_forked_daemon_does_not_outlive_the_step(tmp_path, sim):
    marker = f"hostile-{uuid.uuid4().hex}"
    run, _ = _embedded(tmp_path, sim.url, hostile.outlive(marker))
    assert "daemon started" in _answer(run)
    deadline = time.monotonic() + 5
    while _marked_alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_alive(marker) == []


def test_a_fork_bomb_hits_the_process_limit(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.FORK_BOMB)
    assert "BLOCKED: fork refused after" in _answer(run)


def test_filling_the_disk_stops_at_the_workspace_cap(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.FILL_DISK)
    answer = _answer(run)
    assert "BLOCKED: stopped after" in answer
    written = int(answer.split("stopped after", 1)[1].split()[0])
    assert written <= 256  # SWARM_PYTHON_WORKSPACE_MB


def test_killing_every_process_in_sight_does_not_kill_swarm(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.KILL_PARENT)
    assert "BLOCKED-IF-ALIVE" in _answer(run)  # the run finished: swarm survived


def test_no_socket_of_swarm_is_reachable(tmp_path, sim):
    run, _ = _embedded(tmp_path, sim.url, hostile.FORK_SERVER)
    assert "BLOCKED" in _answer(run)


PROBES_ON_A_NODE = {
    "postgres": hostile.connect(5432),
    "redis": hostile.connect(6379),
    "proc": hostile.ENVIRON,
    "workspaces": hostile.OTHER_WORKSPACES,
    "outside": hostile.WRITE_OUTSIDE,
    "kill": hostile.KILL_PARENT,
}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(240)
def test_probes_are_refused_on_a_worker_node(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=4)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s, SWARM_LLM_API_KEY=SECRET) as c:
        c.start_node("node", llm_concurrency=4, tool_concurrency=2)
        answers = {}
        for name, code in PROBES_ON_A_NODE.items():
            run_id = submit(store, dispatcher, s, hostile.task(code), agents=0, tools=1)
            summary = wait_done(store, run_id, 60, c)
            assert summary.status == "succeeded", (name, summary.reason, c.logs())
            answers[name] = summary.result or ""
        c.check_alive()
    for name, answer in answers.items():
        assert "Tool python returned:" in answer, (name, answer)
        assert "ESCAPED" not in answer, (name, answer)
        assert SECRET not in answer
