"""A Celery worker holds its model calls on an event loop, not on its threads, and a worker
killed with SIGKILL while calls are in flight on that loop loses nothing (issue 11, parts 4-5).

Two real nodes with 2 LLM threads each, Postgres, Redis, the simulated model over HTTP at 1.5 s.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from swarm.dispatch.celery import CeleryDispatcher
from swarm.store.store import StateStore
from tests.acceptance.cluster import Cluster, steps_owned_by, submit, verify_run, w1_task, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

AGENTS, TOOLS, THREADS = 60, 2, 2


@pytest.mark.timeout(300)
def test_a_worker_killed_with_calls_on_its_loop_loses_nothing_and_repeats_no_committed_call(
    tmp_path, pg_url, redis_url, sim
):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=4)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    c = Cluster.for_settings(tmp_path / "cluster", s)
    try:
        nodes = [c.start_node(n, llm_concurrency=THREADS) for n in ("a", "b")]
        run_id = submit(store, dispatcher, s, w1_task(AGENTS, TOOLS, latency=1.5), agents=AGENTS, tools=TOOLS)

        # Both nodes have 4 LLM threads between them; the model sees many more calls at once.
        deadline = time.monotonic() + 120
        while sim.stats()["in_flight"] < 8 * THREADS:
            assert time.monotonic() < deadline, f"never more than a few calls in flight\n{c.logs()}"
            time.sleep(0.05)
        held = [
            (len(steps_owned_by(store, run_id, [pid for p in node for pid in p.tree()])), i)
            for i, node in enumerate(nodes)
        ]
        count, busiest = max(held)
        assert count > 2 * THREADS, held  # its calls are on the loop, not on its threads
        tree = [pid for p in nodes[busiest] for pid in p.tree()]
        for p in nodes[busiest]:
            os.kill(p.pid, signal.SIGKILL)
        for p in nodes[busiest]:
            p.popen.wait(10)
        orphans = steps_owned_by(store, run_id, tree)

        wait_done(store, run_id, 200, c)
        verify_run(
            store,
            sim.log(run_id),
            sim.stats()["by_run"][run_id],
            run_id,
            agents=AGENTS,
            tools=TOOLS,
            in_flight_at_crash=orphans,
        )
        assert sim.stats()["peak_in_flight"] >= 8 * THREADS
    finally:
        c.close()
        dispatcher.close()
        store.engine.dispose()
