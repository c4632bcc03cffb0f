"""No node is special: two plain worker nodes (no beat, no sweeper node) elect one of their worker
processes as the cluster's sweeper through the database. Redis flushed mid-run: the run finishes
within seconds. The sweeper's node killed with -9: a process of the other node takes the role over,
and a second flush right after the kill is still recovered."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from swarm.config import Settings
from swarm.dispatch.celery import CeleryDispatcher
from swarm.domain.status import StepStatus
from swarm.sim import SimServer
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import (
    Cluster,
    steps_owned_by,
    submit,
    verify_run,
    w1_task,
    wait_done,
    wait_progress,
)
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AGENTS, TOOLS = 20, 3
STEPS = 4 + AGENTS * (2 * TOOLS + 2)
#: Flushed Redis → run done: republish_after (5 s) + a sweep interval (2 s) + the rest of the run.
FLUSH_BOUND = 15.0
#: The holder killed → another process holds the role: its lease (3 intervals = 6 s) + 1 interval.
FAILOVER_BOUND = 10.0


@pytest.fixture
def setup(
    tmp_path: Path, pg_url: str, redis_url: str, sim: SimServer
) -> Iterator[tuple[Settings, StateStore, Cluster]]:
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=2)
    c = Cluster.for_settings(tmp_path / "cluster", s)
    c.loglevel = "INFO"  # the election's lines are INFO
    try:
        yield s, store, c
    finally:
        c.close()
        store.engine.dispose()


def _stranded(store: StateStore, run_id: str) -> int:
    with store.read() as conn:
        return len(conn.execute(select(Step.id).where(Step.run_id == run_id, Step.status == StepStatus.READY)).all())


@pytest.mark.timeout(180)
def test_plain_nodes_elect_a_sweeper_that_fails_over(setup, sim: SimServer, redis_url: str) -> None:
    s, store, c = setup
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    flush = redis.Redis.from_url(redis_url)
    nodes = {"a": c.start_node("a", llm_concurrency=16), "b": c.start_node("b", llm_concurrency=16)}
    every = [p for node in nodes.values() for p in node]
    holder = c.wait_sweeper(store, every)
    task = w1_task(AGENTS, TOOLS, latency=0.2)

    # 1. Redis flushed mid-run: the elected sweeper re-publishes every lost step from Postgres.
    run1 = submit(store, dispatcher, s, task, agents=AGENTS, tools=TOOLS)
    wait_progress(store, run1, STEPS // 3)
    flush.flushdb()
    t_flush = time.time()
    stranded = _stranded(store, run1)
    wait_done(store, run1, 60, c)
    done_after_flush = time.time() - t_flush
    verify_run(store, sim.log(run1), sim.stats()["by_run"][run1], run1, agents=AGENTS, tools=TOOLS)

    # 2. The sweeper's node killed with -9 mid-run, and Redis flushed right after: a process of the
    # other node takes the role over and recovers both the dead node's steps and the lost messages.
    run2 = submit(store, dispatcher, s, task, agents=AGENTS, tools=TOOLS)
    wait_progress(store, run2, STEPS // 3)
    holder = c.wait_sweeper(store, every)
    victim = next(name for name, node in nodes.items() if holder in node)
    tree = [pid for p in nodes[victim] for pid in p.tree()]
    for p in nodes[victim]:
        os.kill(p.pid, signal.SIGKILL)
    t_kill = time.time()
    for p in nodes[victim]:
        p.popen.wait(10)
    orphans = steps_owned_by(store, run2, tree)
    flush.flushdb()
    survivors = [p for name, node in nodes.items() if name != victim for p in node]
    successor = c.wait_sweeper(store, survivors, timeout=30)
    failover = time.time() - t_kill
    wait_done(store, run2, 90, c)
    done_after_kill = time.time() - t_kill
    verify_run(
        store,
        sim.log(run2),
        sim.stats()["by_run"][run2],
        run2,
        agents=AGENTS,
        tools=TOOLS,
        in_flight_at_crash=orphans,
    )
    assert "is now the cluster's sweeper" in successor.log.read_text(errors="replace")
    flush.close()
    dispatcher.close()
    print(
        f"\n[election] flush: {stranded} stranded steps, run done {done_after_flush:.2f} s after the flush; "
        f"sweeper {holder.name} killed: {successor.name} took over after {failover:.2f} s, "
        f"{len(orphans)} orphaned steps, run done {done_after_kill:.2f} s after the kill"
    )
    assert done_after_flush <= FLUSH_BOUND
    assert failover <= FAILOVER_BOUND
