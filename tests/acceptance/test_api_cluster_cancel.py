"""Cancel and resume through the API on a real cluster: the server in cluster mode publishes to
Celery, two worker nodes run the steps, and a cancel must stop model calls on every node."""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import func, select

from swarm.api.testing import live_api
from swarm.store.models import Agent, Step
from tests.acceptance.cluster import cluster, verify_run, w1_task
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AGENTS, TOOLS, LATENCY = 12, 3, 0.4


@pytest.fixture
def broker_url(redis_url):
    """A Redis database of its own: the cluster tests' db 7 may be shared by a concurrent run."""
    url = redis_url.rsplit("/", 1)[0] + "/12"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.mark.timeout(240)
def test_cancel_on_two_nodes_then_resume(tmp_path, pg_url, broker_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=broker_url)
    with cluster(tmp_path / "cluster", s) as c, live_api(s) as api:
        for node in ("a", "b"):
            c.start_node(node, llm_concurrency=16, tool_concurrency=2)
        key = api.key()
        with api.client(key) as http:
            assert http.get("/v1/info").json()["mode"] == "cluster"
            assert http.get("/readyz").json()["checks"]["broker"]["ok"] is True
            run_id = http.post("/v1/runs", json={"task": w1_task(AGENTS, TOOLS, latency=LATENCY)}).json()["id"]

            # Cancel once both nodes are mid-model-call for this run.
            deadline = time.monotonic() + 90
            while len(nodes_running_llm(api, run_id)) < 2:
                assert time.monotonic() < deadline, (
                    f"the run never ran on both nodes: {api.store.run_summary(run_id)} {owners(api, run_id)}\n"
                    + c.logs()
                )
                c.check_alive()
                time.sleep(0.05)
            resp = http.post(f"/v1/runs/{run_id}/cancel")
            returned = time.time()
            assert resp.json() == {"id": run_id, "status": "cancelled", "changed": True}
            with api.store.read() as conn:
                cancelled_llm = {
                    i
                    for (i,) in conn.execute(
                        select(Step.id).where(Step.run_id == run_id, Step.kind == "llm", Step.status == "cancelled")
                    )
                }

            time.sleep(LATENCY + 1.5)
            log = sim.log(run_id)
            assert [e for e in log if e["t"] - LATENCY > returned + 1.0] == [], "a model call started after cancel"
            with api.store.read() as conn:
                statuses = dict(
                    conn.execute(
                        select(Agent.status, func.count()).where(Agent.run_id == run_id).group_by(Agent.status)
                    ).all()
                )
            assert "running" not in statuses and statuses.get("cancelled", 0) >= 1, statuses
            # Requests served for steps the cancel caught in flight: their answers were refused.
            aborted = {e["step_id"] for e in log if e["status"] == 200 and e["step_id"] in cancelled_llm}

            assert http.post(f"/v1/runs/{run_id}/resume").status_code == 200
            deadline = time.monotonic() + 120
            while api.store.run_summary(run_id).status == "running":
                assert time.monotonic() < deadline, c.logs()
                c.check_alive()
                time.sleep(0.2)
        full_log = sim.log(run_id)
        verify_run(
            api.store,
            full_log,
            sim.stats()["by_run"][run_id],
            run_id,
            agents=AGENTS,
            tools=TOOLS,
            in_flight_at_crash=aborted,
        )


def nodes_running_llm(api, run_id) -> set[str]:
    """Celery worker processes (by pid, from the lease owner) running a model call of the run."""
    with api.store.read() as conn:
        owners = (
            conn.execute(select(Step.owner).where(Step.run_id == run_id, Step.kind == "llm", Step.status == "running"))
            .scalars()
            .all()
        )
    return {o.split(":")[1] for o in owners if o}


def owners(api, run_id):
    with api.store.read() as conn:
        return conn.execute(select(Step.kind, Step.status, Step.owner).where(Step.run_id == run_id)).all()
