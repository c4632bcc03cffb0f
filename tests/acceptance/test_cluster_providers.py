"""Several providers on a real cluster: a worker node (celery processes, which remove secrets from
their environment at start) resolves a run's provider name from its own SWARM_PROVIDERS, reading
the key's ${VAR} before the environment is scrubbed: every model call of the run reaches sim B
with B's key; a run without a provider reaches sim A."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from swarm.dispatch.celery import CeleryDispatcher
from swarm.runtime import run_spec
from swarm.sim import SimConfig, SimServer
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

KEY_B = "sk-team-b-cluster-secret-0001"
TASK = "t #sim agents=3 tools=1 tool=echo"


@pytest.fixture
def sim_b() -> Iterator[SimServer]:
    with SimServer(SimConfig(port=0)) as server:
        yield server


@pytest.mark.timeout(300)
def test_a_cluster_worker_sends_a_runs_calls_to_its_named_provider(
    tmp_path, pg_url, redis_url, sim, sim_b, monkeypatch
) -> None:
    monkeypatch.setenv("TEAM_B_KEY", KEY_B)
    providers = json.dumps({"providers": {"b": {"base_url": sim_b.url, "api_key": "${TEAM_B_KEY}"}}})
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url, providers=providers)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s, SWARM_PROVIDERS=providers, TEAM_B_KEY=KEY_B) as c:
        c.start_node("a", tool_concurrency=1)
        on_b, refs = store.create_run(run_spec(s, TASK, provider="b", provider_limits=(2, None, None)))
        dispatcher.dispatch(refs)
        on_a, refs = store.create_run(run_spec(s, TASK))
        dispatcher.dispatch(refs)
        for run_id in (on_b, on_a):
            summary = wait_done(store, run_id, 180, c)
            assert summary.status == "succeeded", f"{summary}\n{c.logs()}"
        logs = c.logs()
    digest = hashlib.sha256(KEY_B.encode()).hexdigest()[:12]
    assert len(sim_b.log(on_b)) >= 4 and {e["key_digest"] for e in sim_b.log(on_b)} == {digest}
    assert sim.log(on_b) == [] and sim_b.log(on_a) == [] and len(sim.log(on_a)) >= 4
    assert sim_b.stats()["peak_in_flight"] <= 2
    assert KEY_B not in logs
    store.engine.dispose()
