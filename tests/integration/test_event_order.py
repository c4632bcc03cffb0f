"""The events table tells a run's story in causal order: a turn's ``llm_done`` comes before the
agent's end it caused, and every agent's end before the run's."""

from __future__ import annotations

from typing import Any

from swarm.runtime import LocalRuntime, run_spec
from swarm.store.store import StateStore
from tests.conftest import make_settings


def _all_events(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while batch := store.events_since(run_id, events[-1]["id"] if events else 0):
        events.extend(batch)
    return events


def test_each_agents_last_llm_done_precedes_its_agent_done_and_all_precede_run_done(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, "order #sim agents=3 tools=2 tool=echo"))
        summary = rt.wait(run_id, timeout=120)
    assert summary.status == "succeeded", summary.reason

    events = _all_events(store, run_id)
    types = [e["type"] for e in events]
    assert types.count("run_done") == 1 and types[-1] == "run_done", types
    done_at = {e["agent_id"]: i for i, e in enumerate(events) if e["type"] == "agent_done"}
    assert len(done_at) == 4  # the orchestrator and its 3 subagents
    for agent_id, done in done_at.items():
        llm = [i for i, e in enumerate(events) if e["type"] == "llm_done" and e["agent_id"] == agent_id]
        assert llm and llm[-1] < done, (agent_id, types)
        # Nothing of an agent happens after its end.
        assert all(e["agent_id"] != agent_id for e in events[done + 1 :] if e["type"] != "run_done")
    assert max(done_at.values()) < len(events) - 1
    store.engine.dispose()
