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
