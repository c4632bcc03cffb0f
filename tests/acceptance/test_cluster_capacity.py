"""Provider capacity shared by a real cluster: two worker nodes (real Celery processes, real
Postgres and Redis) against the simulator over HTTP capped like a provider. The simulator never
sees more calls in flight than the cap, a Redis flush mid-run neither leaks nor exceeds it, and a
429 storm (the cap lowered mid-run) makes the whole cluster back off, then recover."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from swarm.dispatch.celery import CeleryDispatcher
from swarm.domain.capacity import provider_id
from swarm.llm.capacity_redis import RedisCapacity
from swarm.sim import SimConfig, SimServer
from swarm.sim.capacity import SimLimits
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, submit, verify_run, w1_task, wait_done, wait_progress
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CAP = 10
AGENTS, TOOLS = 30, 3


@pytest.fixture
def capped_sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(port=0, limits=SimLimits(max_concurrency=CAP))) as server:
        yield server


def shared_view(redis_url: str, sim: SimServer) -> RedisCapacity:
    from swarm.domain.capacity import ProviderLimits

    pid = provider_id(sim.url, "", "kimi-k2.5")
    return RedisCapacity(redis.Redis.from_url(redis_url), pid, ProviderLimits(concurrency=CAP))


@pytest.mark.timeout(300)
def test_two_nodes_never_exceed_the_provider_cap_even_across_a_redis_flush(
    tmp_path, pg_url, redis_url, capped_sim
) -> None:
    sim = capped_sim
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url, republish_after=2.0)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    env = {"SWARM_PROVIDER_CONCURRENCY": str(CAP), "SWARM_PROVIDER_LEASE_SECONDS": "6"}
    with cluster(tmp_path / "cluster", s, **env) as c:
        for name in ("a", "b"):
            c.start_node(name, llm_concurrency=16)
        run_id = submit(store, dispatcher, s, w1_task(AGENTS, TOOLS, latency=0.3), agents=AGENTS, tools=TOOLS)
        wait_progress(store, run_id, 40)
        assert sim.stats()["in_flight"] > 0
        redis.Redis.from_url(redis_url).flushdb()  # capacity state and queued messages gone
        wait_done(store, run_id, 200, c)
        stats = sim.stats()
        verify_run(store, sim.log(run_id), stats["by_run"][run_id], run_id, agents=AGENTS, tools=TOOLS)
        assert stats["peak_in_flight"] <= CAP, stats
        assert stats["throttled"] == 0, stats
        # Nothing leaked: every slot is free again, at once (no lease had to run out).
        assert shared_view(redis_url, sim).snapshot().in_flight == 0
    dispatcher.close()
    store.engine.dispose()


@pytest.mark.timeout(300)
def test_429_storm_backs_the_whole_cluster_off_and_it_recovers(tmp_path, pg_url, redis_url, capped_sim) -> None:
    sim = capped_sim
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    env = {"SWARM_PROVIDER_CONCURRENCY": str(CAP), "SWARM_LLM_MAX_RETRIES": "2"}
    view = shared_view(redis_url, sim)
    with cluster(tmp_path / "cluster", s, **env) as c:
        for name in ("a", "b"):
            c.start_node(name, llm_concurrency=16)
        run_id = submit(store, dispatcher, s, w1_task(AGENTS, TOOLS, latency=0.3), agents=AGENTS, tools=TOOLS)
        wait_progress(store, run_id, 30)
        sim.set_limits(SimLimits(max_concurrency=3))  # the provider lowers the account's cap
        lowest = float(CAP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and lowest > 3:
            lowest = min(lowest, view.snapshot().limit)
            time.sleep(0.1)
        assert lowest <= 3, f"shared limit only fell to {lowest}"
        storm = sim.stats()["throttled"]
        assert storm > 0
        sim.set_limits(SimLimits(max_concurrency=CAP))
        # With more than 2 retries' worth of 429s, the run still finishes: "slow down" is not a fault.
        wait_done(store, run_id, 240, c)
        stats = sim.stats()
        verify_run(store, sim.log(run_id), stats["by_run"][run_id], run_id, agents=AGENTS, tools=TOOLS)
        after = view.snapshot()
        assert after.throttled == stats["throttled"]  # every 429 the sim sent was seen by the cluster
        print(f"\n429 storm: {storm} refused during it, {stats['throttled']} in all; limit fell to {lowest}")
    dispatcher.close()
    store.engine.dispose()


@pytest.mark.timeout(400)
def test_w1_on_two_nodes_against_a_provider_capped_at_50(tmp_path, pg_url, redis_url) -> None:
    """The issue's test at full size: W1 (100 x 15) at 1.0 s latency, Kimi tier 1's 50 concurrent."""
    with SimServer(SimConfig(port=0, limits=SimLimits(max_concurrency=50))) as sim:
        s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
        store = StateStore.from_url(pg_url)
        dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
        with cluster(tmp_path / "cluster", s, SWARM_PROVIDER_TIER="kimi-tier1", SWARM_PROVIDER_RPM="100000") as c:
            for name in ("a", "b"):
                c.start_node(name, llm_concurrency=58)
            run_id = submit(store, dispatcher, s, w1_task(100, 15, latency=1.0), agents=100, tools=15)
            summary = wait_done(store, run_id, 360, c)
            stats = sim.stats()
            verify_run(store, sim.log(run_id), stats["by_run"][run_id], run_id, agents=100, tools=15)
            print(f"\nW1 capped at 50 on 2 nodes: {summary.wall_seconds:.1f} s, sim stats {stats}")
            assert stats["peak_in_flight"] <= 50 and stats["throttled"] == 0, stats
        dispatcher.close()
        store.engine.dispose()
