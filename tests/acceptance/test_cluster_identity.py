"""Two deployments share one Redis database: each has its own PostgreSQL database, hence its own
cluster id. The other deployment's worker refuses every step message of ours, loudly (naming both
ids), and hands it back to the queue; our run is unaffected and finishes with exact counts.
`swarm worker --check` reports each side's id."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from swarm.dispatch.celery import CeleryDispatcher
from swarm.sim import SimServer
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, submit, verify_run, w1_task, wait_done
from tests.conftest import _admin_exec, _pg_base, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AGENTS, TOOLS = 20, 3


@pytest.fixture
def other_pg_url(pg_template: str) -> Iterator[str]:
    """A second deployment's database (cloned from the same template: its id is made at first use)."""
    from tests.conftest import PG_ADMIN_URL

    name = f"swarm_t_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield f"{_pg_base(PG_ADMIN_URL)}/{name}"
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "worker", "--check", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, object] = json.loads(out.stdout)
    return report


@pytest.mark.timeout(180)
def test_a_worker_of_another_deployment_refuses_our_steps(tmp_path, pg_url, other_pg_url, redis_url, sim: SimServer):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=2)
    other = StateStore.from_url(other_pg_url, pool_size=1)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    ours, theirs = store.cluster_id(), other.cluster_id()
    assert ours != theirs
    try:
        with cluster(tmp_path / "cluster", s) as c:
            foreign_env = {"SWARM_DATABASE_URL": other_pg_url}
            assert _check(c.env)["cluster"] == ours
            assert _check({**c.env, **foreign_env})["cluster"] == theirs
            # The foreign node first, so it is waiting on the queues when our steps are published.
            foreign = c.start_node("foreign", llm_concurrency=4, tool_concurrency=1, env=foreign_env)
            c.start_node("ours", llm_concurrency=16)
            run_id = submit(store, dispatcher, s, w1_task(AGENTS, TOOLS, latency=0.05), agents=AGENTS, tools=TOOLS)
            summary = wait_done(store, run_id, 120, c)
            verify_run(store, sim.log(run_id), sim.stats()["by_run"][run_id], run_id, agents=AGENTS, tools=TOOLS)
            refusals = [
                line
                for p in foreign
                for line in p.log.read_text(errors="replace").splitlines()
                if "ERROR" in line and "refused" in line
            ]
            assert refusals, "the foreign worker never refused a step\n" + c.logs()
            assert all(ours in line and theirs in line for line in refusals)
            print(
                f"\n[identity] run done in {summary.wall_seconds:.2f} s; foreign worker refusal lines: {len(refusals)}"
            )
    finally:
        dispatcher.close()
        store.engine.dispose()
        other.engine.dispose()
