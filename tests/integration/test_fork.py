"""Forking a run at a step: the fork carries the origin's committed history up to the step and goes
on from there through the simulated model over HTTP. No model call committed before the fork point
is sent again (the sim's request log), the fork finishes, and the origin is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from swarm.domain.events import EventType
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import AGENTS, ARTIFACTS, DEFS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.store import StateStore
from tests.conftest import make_settings

TABLES = (RUNS, AGENTS, DEFS, MESSAGES, STEPS, EVENTS, ARTIFACTS)


def snapshot(store: StateStore, run_id: str) -> dict[str, Any]:
    """Every row of a run, for 'unchanged' checks."""
    with store.read() as conn:
        return {
            t.name: sorted(
                (
                    tuple(str(v) for v in r)
                    for r in conn.execute(select(t).where((t.c.id if t is RUNS else t.c.run_id) == run_id))
                ),
            )
            for t in TABLES
        }


def llm_steps(store: StateStore, run_id: str) -> list[Any]:
    with store.read() as conn:
        return conn.execute(
            select(STEPS, EVENTS.c.id.label("done_id"))
            .join(EVENTS, (EVENTS.c.step_id == STEPS.c.id) & (EVENTS.c.type == EventType.LLM_DONE))
            .where(STEPS.c.run_id == run_id, STEPS.c.kind == "llm")
            .order_by(EVENTS.c.id)
        ).all()


def request_keys(sim, run_id: str, step_ids: set[str] | None = None) -> set[str]:
    return {e["key"] for e in sim.log(run_id) if e["status"] == 200 and (step_ids is None or e["step_id"] in step_ids)}


@pytest.mark.timeout(300)
def test_a_fork_at_a_subagent_step_sends_no_call_before_it_again_and_finishes(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        origin = rt.submit(run_spec(s, "t #sim agents=3 tools=3 tool=python scenario=files"))
        done = rt.wait(origin, timeout=120)
        assert done.status == "succeeded", done.reason
        before = snapshot(store, origin)
        steps = llm_steps(store, origin)
        # A subagent's second model call: mid-run, with the other subagents in parallel around it.
        at = next(st for st in steps if st.agent_id != steps[0].agent_id and st.turn == 1)
        earlier = {st.id for st in steps if st.done_id < at.done_id}
        fork_id, refs = store.fork_run(origin, at.id, message="task 1 step 0 read 0 (replaced)")
        assert refs
        rt.dispatch(refs)
        rt._runs.add(fork_id)
        forked = rt.wait(fork_id, timeout=120)

    assert forked.status == "succeeded", forked.reason
    assert forked.result.startswith("Summary of 3 subagent reports: 3 ok, 0 errors")
    assert (forked.forked_from_run_id, forked.forked_at_step_id) == (origin, at.id)
    assert store.run_summary(origin).forks == [fork_id]
    assert snapshot(store, origin) == before  # the origin is unchanged
    # No model call committed before the fork point was sent again.
    sent_by_fork = request_keys(sim, fork_id)
    assert sent_by_fork and not sent_by_fork & request_keys(sim, origin, earlier)
    assert sim.stats()["duplicates"] == 0
    # The fork point was asked again with the replaced message, and read it.
    at_fork = [e for e in sim.log(fork_id) if e["status"] == 200]
    assert len(at_fork) == forked.llm_calls - len(earlier)
    store.engine.dispose()


def cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    import swarm.cli.runs  # noqa: F401  (registers the commands)
    from swarm.cli.common import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_fork_over_rest_and_the_cli_at_the_final_step_asks_only_that_call_again(tmp_path, sqlite_url, sim, monkeypatch):
    import json

    from swarm.api.testing import live_api

    with (
        live_api(make_settings(tmp_path, sqlite_url, sim.url)) as api,
        api.client(api.key("tenant-a")) as a,
        api.client(api.key("tenant-b")) as b,
    ):
        origin = a.post("/v1/runs", json={"task": "t #sim agents=2 tools=1 tool=echo"}).json()["id"]
        assert api.wait(origin)["status"] == "succeeded"
        steps = llm_steps(api.store, origin)
        final = steps[-1]  # the orchestrator's summary
        assert b.post(f"/v1/runs/{origin}/fork", json={"at_step": final.id}).status_code == 404  # another tenant
        refused = a.post(f"/v1/runs/{origin}/fork", json={"at_step": "ffff"})
        assert refused.status_code == 404 and "has no step" in refused.json()["message"]
        tool = next(s for s in api.store.steps_timeline(origin) if s["kind"] == "tool")
        refused = a.post(f"/v1/runs/{origin}/fork", json={"at_step": tool["id"], "message": "x"})
        assert refused.status_code == 422 and "fork at an LLM step" in refused.json()["message"]

        forked = a.post(f"/v1/runs/{origin}/fork", json={"at_step": final.id[:12], "message": "say it again"})
        assert forked.status_code == 202, forked.text
        fork_id = forked.json()["id"]
        summary = api.wait(fork_id)
        assert summary["status"] == "succeeded"
        assert (summary["forked_from_run_id"], summary["forked_at_step_id"]) == (origin, final.id)
        assert a.get(f"/v1/runs/{origin}").json()["forks"] == [fork_id]
        # Every model call before the summary is carried over: only the summary is asked again.
        assert len(request_keys(sim, fork_id)) == 1 and summary["llm_calls"] == len(steps)
        agents = a.get(f"/v1/runs/{fork_id}/agents").json()["agents"]
        assert len(agents) == 3 and {x["status"] for x in agents} == {"succeeded"}

        # The CLI, through the server: fork a tool step (it runs again), then show both ways.
        monkeypatch.setenv("SWARM_API_URL", api.url)
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-a"))
        code, out = cli("fork", origin[:8], "--at", tool["id"], "--json")
        assert code == 0, out
        again = json.loads(out)
        assert again["status"] == "succeeded" and again["forked_at_step_id"] == tool["id"]
        code, out = cli("show", origin)
        assert code == 0 and "forks" in out and fork_id in out and again["id"] in out
        code, out = cli("show", again["id"])
        assert code == 0 and "forked from" in out and origin in out
        code, out = cli("show", again["id"], "--json")
        shown = json.loads(out)
        assert (shown["forked_from_run_id"], shown["forked_at_step_id"]) == (origin, tool["id"])


@pytest.mark.timeout(300)
def test_a_fork_in_the_middle_of_a_fan_out_waits_for_the_subagents_still_out(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url, tool_assign_tasks=True)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        origin = rt.submit(run_spec(s, "t #sim agents=6 fanout=1 tools=2 tool=echo"))
        assert rt.wait(origin, timeout=120).status == "succeeded"
        before = snapshot(store, origin)
        steps = llm_steps(store, origin)
        subs = [st for st in steps if st.agent_id != steps[0].agent_id]
        at = subs[len(subs) // 2]  # some subagents have answered, some have not
        earlier = {st.id for st in steps if st.done_id < at.done_id}
        fork_id = rt.fork(origin, at.id)
        forked = rt.wait(fork_id, timeout=120)
    assert forked.status == "succeeded", forked.reason
    assert forked.result.startswith("Summary of 6 subagent reports: 6 ok, 0 errors")
    assert forked.subagents == 6
    assert not request_keys(sim, fork_id) & request_keys(sim, origin, earlier)
    assert len(request_keys(sim, fork_id)) == forked.llm_calls - len(earlier)
    assert snapshot(store, origin) == before
    store.engine.dispose()


def test_a_fork_counts_against_the_tenants_run_quota(tmp_path, sqlite_url, sim):
    from swarm.api.testing import live_api

    s = make_settings(tmp_path, sqlite_url, sim.url, tenant_max_runs_per_day=2)
    with live_api(s) as api, api.client(api.key("tenant-a")) as a:
        origin = a.post("/v1/runs", json={"task": "t #sim agents=1 tools=1 tool=echo"}).json()["id"]
        api.wait(origin)
        at = llm_steps(api.store, origin)[-1].id
        first = a.post(f"/v1/runs/{origin}/fork", json={"at_step": at})
        assert first.status_code == 202, first.text
        api.wait(first.json()["id"])
        over = a.post(f"/v1/runs/{origin}/fork", json={"at_step": at})
        assert over.status_code == 429 and over.headers["Retry-After"]


@pytest.mark.timeout(300)
def test_a_running_run_can_be_forked_and_both_finish(tmp_path, db_url, sim):
    import time

    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        origin = rt.submit(run_spec(s, "t #sim agents=4 tools=6 tool=echo latency=0.05"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            steps = llm_steps(store, origin)
            subs = [st for st in steps if st.agent_id != steps[0].agent_id and st.turn == 2]
            if subs:
                break
            time.sleep(0.02)
        at = subs[0]
        assert store.run_status(origin) == "running"
        fork_id = rt.fork(origin, at.id)
        earlier = {st.id for st in llm_steps(store, origin) if st.done_id < at.done_id}
        forked, done = rt.wait(fork_id, timeout=120), rt.wait(origin, timeout=120)
    assert forked.status == done.status == "succeeded", (forked.reason, done.reason)
    assert forked.result.startswith("Summary of 4 subagent reports: 4 ok") and done.result == forked.result
    assert not request_keys(sim, fork_id) & request_keys(sim, origin, earlier)
    assert sim.stats()["duplicates"] == 0
    store.engine.dispose()
