"""W1 (100 subagents x 15 tool calls) on a real cluster: two nodes, each a threads-pool LLM worker
and a prefork tool worker, plus the sweeper — real Postgres, real Redis, the simulated model over
HTTP — finishing with exact counts and no model request served twice."""

from __future__ import annotations

import time

import pytest

from swarm.dispatch.celery import CeleryDispatcher
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, owners_pids, submit, verify_run, w1_task, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_w1_on_two_nodes_exact_counts_no_duplicates(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s) as c:
        nodes = [c.start_node("a"), c.start_node("b")]
        t0 = time.time()
        run_id = submit(store, dispatcher, s, w1_task(100, 15, latency=0.02), agents=100, tools=15)
        summary = wait_done(store, run_id, 240, c)
        wall = time.time() - t0
        print(f"\nW1 on 2 nodes: {wall:.1f} s wall (incl. worker start-up), run wall {summary.wall_seconds:.1f} s")
        verify_run(store, sim.log(run_id), sim.stats()["by_run"][run_id], run_id, agents=100, tools=15)
        # Both nodes did work, on both queues.
        pids = owners_pids(store, run_id)
        for node in nodes:
            for proc in node:
                assert pids & set(proc.tree()), f"{proc.name} ran no step"
    dispatcher.close()
    store.engine.dispose()
