"""A budget kept across workers: W1 with a USD cap of about half its cost, on two nodes (each a
threads-pool LLM worker and a prefork tool worker, plus the sweeper) — real Postgres, real Redis,
the simulated model over HTTP. Concurrent workers reserve each call's worst case on the run row
before calling, so the run stops with reason `budget` and neither the recorded spend nor what the
model served passes the cap; resumed with a raised budget it finishes, repeating no committed call."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from swarm.dispatch.celery import CeleryDispatcher
from swarm.domain import pricing
from swarm.domain.pricing import Usage
from swarm.domain.status import StepStatus
from swarm.runtime import run_spec
from swarm.store.models import RUNS, STEPS
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, verify_run, w1_task, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

#: W1's cost at kimi-k2.5 prices against a fresh simulator (bench/cost.py: $0.4477); the cap is half.
CAP_USD = 0.22
MAX_OUTPUT = 512


def served_pico(sim, run_id: str) -> int:
    price = pricing.BUILTIN["kimi-k2.5"]
    calls = sim.usage(run_id)["calls"]
    return sum(
        pricing.cost(Usage(c["prompt_tokens"], c["cached_tokens"], c["completion_tokens"]), price) or 0 for c in calls
    )


@pytest.mark.timeout(420)
def test_w1_with_half_its_budget_on_two_nodes_stops_at_the_cap_and_resumes(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s, SWARM_LLM_MAX_TOKENS=str(MAX_OUTPUT)) as c:
        c.start_node("a")
        c.start_node("b")  # every node runs a sweeper candidate: no sweeper of its own to start
        spec = run_spec(s, w1_task(100, 15), max_subagents=100, max_tool_calls=1500, max_usd=CAP_USD)
        run_id, refs = store.create_run(spec)
        dispatcher.dispatch(refs)
        stopped = wait_done(store, run_id, 240, c)

        time.sleep(1.0)  # calls in flight when the run stopped come back (and are discarded)
        assert stopped.status == "failed", stopped
        assert stopped.reason and stopped.reason.startswith("budget:"), stopped.reason
        cap = pricing.to_pico(CAP_USD)
        with store.read() as conn:
            run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
            committed = set(
                conn.execute(
                    select(STEPS.c.id).where(
                        STEPS.c.run_id == run_id, STEPS.c.kind == "llm", STEPS.c.status == StepStatus.SUCCEEDED
                    )
                ).scalars()
            )
        resumed_at = time.time()
        served = {e["step_id"] for e in sim.log(run_id) if e["status"] == 200 and e["t"] < resumed_at}
        # The recorded spend stays under the cap; what the model served (committed or not) passes it
        # by no more than the reservations still held for calls in flight when the run stopped.
        assert run.cost_pico <= run.max_cost_pico == cap
        assert served_pico(sim, run_id) <= cap + run.reserved_pico
        assert 0 < stopped.llm_calls < 3 + 100 * 16
        print(
            f"\nW1 stopped at ${run.cost_pico / pricing.PICO:.4f} of ${CAP_USD} after {stopped.llm_calls} model calls; "
            f"served ${served_pico(sim, run_id) / pricing.PICO:.4f}, {len(served - committed)} served uncommitted"
        )

        ids = store.resume_run(run_id, max_cost_pico=pricing.to_pico(1.0))
        dispatcher.dispatch(ids)
        done = wait_done(store, run_id, 240, c)
        assert done.status == "succeeded", done
        # Exact W1 counts, and no model request served twice — but for calls that were served and
        # never committed when the budget stopped the run (their answers were discarded).
        verify_run(
            store,
            sim.log(run_id),
            sim.stats()["by_run"][run_id],
            run_id,
            agents=100,
            tools=15,
            in_flight_at_crash=served - committed,
        )
        assert done.cost_usd is not None and done.cost_usd > CAP_USD
    dispatcher.close()
    store.engine.dispose()
