"""Cancel that really stops, and resume that reuses everything committed — through the API, on
PostgreSQL, with the server's embedded runtime running real parallel subagents."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from swarm.api.testing import live_api
from swarm.store.models import Agent, Step
from tests.conftest import make_settings


@pytest.fixture
def api(tmp_path, pg_url, sim):
    with live_api(make_settings(tmp_path, pg_url, sim.url)) as a:
        yield a


def running_steps(api, run_id):
    with api.store.read() as conn:
        return dict(
            Counter(
                conn.execute(
                    select(Step.kind, Step.tool_name).where(Step.run_id == run_id, Step.status == "running")
                ).all()
            )
        )


def wait_for(predicate, timeout=20.0, poll=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(poll)


def agent_statuses(api, run_id):
    with api.store.read() as conn:
        return dict(
            conn.execute(select(Agent.status, func.count()).where(Agent.run_id == run_id).group_by(Agent.status)).all()
        )


def open_steps(api, run_id):
    with api.store.read() as conn:
        return conn.execute(
            select(func.count())
            .select_from(Step)
            .where(Step.run_id == run_id, Step.status.in_(["ready", "running", "waiting"]))
        ).scalar_one()


def sim_calls(sim, run_id):
    """(served requests, duplicate requests) of one run, from the sim's ledger."""
    served = [e for e in sim.log(run_id) if e["status"] == 200]
    return len(served), len(served) - len({e["key"] for e in served})


def test_cancel_stops_every_model_call_of_a_busy_swarm(api, sim):
    """Cancel while 10 subagents are mid-LLM-call: nothing of the run starts afterwards."""
    latency = 0.4
    key = api.key()
    with api.client(key) as c:
        run_id = c.post("/v1/runs", json={"task": f"cancel #sim agents=10 tools=4 tool=echo latency={latency}"}).json()[
            "id"
        ]
        wait_for(lambda: running_steps(api, run_id).get(("llm", None), 0) >= 5)
        t0 = time.time()
        resp = c.post(f"/v1/runs/{run_id}/cancel")
        returned = time.time()
    assert resp.status_code == 200 and resp.json() == {"id": run_id, "status": "cancelled", "changed": True}
    assert returned - t0 < 1.0, "cancel must return quickly"
    # Calls in flight may finish (their results are discarded by the fence); none may start later.
    time.sleep(latency + 1.5)
    late = [e for e in sim.log(run_id) if e["t"] - latency > returned + 1.0]
    assert late == []
    in_flight = [e for e in sim.log(run_id) if e["t"] > returned]
    assert len(in_flight) <= 11  # at most one call per agent was already under way
    statuses = agent_statuses(api, run_id)
    assert statuses.get("running", 0) == 0 and statuses.get("cancelled", 0) >= 1
    assert set(statuses) <= {"cancelled", "succeeded"}
    assert open_steps(api, run_id) == 0
    summary = api.store.run_summary(run_id)
    assert summary.status == "cancelled" and summary.reason == "cancelled by user"
    # The live view agrees: every agent it shows has ended.
    with api.client(key) as c:
        assert {a["status"] for a in c.get(f"/v1/runs/{run_id}/agents").json()["agents"]} <= {"cancelled", "succeeded"}


def test_resume_after_cancel_completes_without_repeating_a_call(api, sim):
    """Cancel while every subagent waits on a slow tool call (no model call in flight), resume:
    the run completes with exact counts and the model never sees the same request twice."""
    agents, tools = 6, 2
    key = api.key()
    with api.client(key) as c:
        run_id = c.post(
            "/v1/runs", json={"task": f"resume #sim agents={agents} tools={tools} tool=python tool_latency=1.0"}
        ).json()["id"]
        wait_for(lambda: running_steps(api, run_id) == {("tool", "python"): agents})
        assert c.post(f"/v1/runs/{run_id}/cancel").json()["changed"] is True
        before = sim_calls(sim, run_id)[0]
        statuses = agent_statuses(api, run_id)
        assert statuses == {"cancelled": agents + 1}, statuses
        time.sleep(1.2)  # the tool calls in flight end; their results are refused
        assert sim_calls(sim, run_id)[0] == before
        assert api.store.run_summary(run_id).tool_calls == agents  # each worker's first call, not done

        resumed = c.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "running" and resumed.json()["dispatched"] == agents
        final = api.wait(run_id, timeout=60)
        assert c.post(f"/v1/runs/{run_id}/resume").status_code == 409
    assert final["status"] == "succeeded", final
    llm_calls = 3 + agents * (tools + 1)  # orchestrator: create, assign, summarise; each worker: tools + answer
    assert (final["subagents"], final["tool_calls"], final["llm_calls"]) == (agents, agents * tools, llm_calls)
    assert final["critical_steps"] == 3 + tools + 1
    assert final["total_steps"] == llm_calls
    served, duplicates = sim_calls(sim, run_id)
    assert (served, duplicates) == (llm_calls, 0)
    assert agent_statuses(api, run_id) == {"succeeded": agents + 1}


def test_a_restarted_server_continues_its_runs(tmp_path, pg_url, sim):
    """Stop the server mid-run and start another: the run continues where it stood and ends
    with the counts of an uninterrupted run, without one model call repeated."""
    agents, tools = 8, 4
    settings = make_settings(tmp_path, pg_url, sim.url)
    with live_api(settings) as first:
        key = first.key()
        with first.client(key) as c:
            run_id = c.post(
                "/v1/runs", json={"task": f"restart #sim agents={agents} tools={tools} tool=echo latency=0.3"}
            ).json()["id"]
        wait_for(lambda: first.store.run_summary(run_id).tool_calls >= agents)
    # Stopped gracefully: the calls in flight committed, the rest waits in the database.
    with live_api(settings) as second:
        mid = second.store.run_summary(run_id)
        assert mid.status == "running" and 0 < mid.llm_calls < 3 + agents * (tools + 1), mid
        final = second.wait(run_id, timeout=60)
    llm_calls = 3 + agents * (tools + 1)
    assert (final["status"], final["llm_calls"], final["tool_calls"]) == ("succeeded", llm_calls, agents * tools)
    assert sim_calls(sim, run_id) == (llm_calls, 0)
