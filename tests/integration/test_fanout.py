"""Template fan-out (SWARM_TOOL_ASSIGN_TASKS=true): one assign_tasks call launches one subagent per
item through the simulated model over HTTP; its step waits for all of them and gets every answer,
in item order. Too many items, duplicate prompts, the subagent budget and the per-turn spawn cap
are tool errors for the model; the run goes on. Off by default: the model never sees the tool."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from swarm.constants import ASSIGN_TASKS
from swarm.domain import prompts
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.models import Agent, Step
from swarm.store.store import StateStore
from tests.conftest import make_settings


def fanout_steps(store: StateStore, run_id: str) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(Step).where(Step.run_id == run_id, Step.tool_name == ASSIGN_TASKS)).all())


def children(store: StateStore, step_id: str) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(Agent).where(Agent.parent_step_id == step_id).order_by(Agent.item)).all())


def run(tmp_path, db_url, sim, task: str, **overrides):
    s = make_settings(tmp_path, db_url, sim.url, tool_assign_tasks=True, **overrides)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, task))
        summary = rt.wait(run_id, timeout=240)
    return store, run_id, summary


@pytest.mark.timeout(600)
def test_128_items_launch_128_subagents_and_the_step_gets_every_answer_in_item_order(tmp_path, db_url, sim):
    store, run_id, s = run(tmp_path, db_url, sim, "t #sim agents=128 fanout=1 tools=1 tool=echo", max_subagents=200)
    assert s.status == "succeeded", s.reason
    assert s.result.startswith("Summary of 128 subagent reports: 128 ok, 0 errors")
    assert s.subagents == 128 and s.tool_calls == 128
    [step] = fanout_steps(store, run_id)
    assert (step.status, step.is_error, step.pending_children) == ("succeeded", False, 0)
    kids = children(store, step.id)
    assert [k.item for k in kids] == list(range(128))
    assert all(k.status == "succeeded" and k.parent_turn == step.turn for k in kids)
    labels = re.findall(r"=== item (\d+)/128: (\d+) \(answer\) ===\nTask (\d+) done", step.result)
    assert labels == [(str(i), str(i), str(i)) for i in range(1, 129)]
    assert sim.stats()["duplicates"] == 0
    store.engine.dispose()


@pytest.mark.parametrize(
    ("items", "template", "expected"),
    [
        ([str(i) for i in range(129)], "do {{item}}", prompts.FANOUT_TOO_MANY.format(limit=128, count=129)),
        (["a", "b", "a"], "do {{item}}", prompts.FANOUT_DUPLICATES.format(first=1, second=3)),
        (["a", "b"], "do it", prompts.FANOUT_NO_PLACEHOLDER.format(placeholder="{{item}}")),
        ([], "do {{item}}", prompts.FANOUT_NO_ITEMS),
    ],
)
def test_too_many_items_or_duplicate_prompts_are_a_tool_error(tmp_path, sqlite_url, sim, items, template, expected):
    task = "t " + call_directive(ASSIGN_TASKS, {"agent": "worker", "prompt_template": template, "items": items})
    store, run_id, s = run(tmp_path, sqlite_url, sim, task)
    assert s.status == "succeeded" and s.subagents == 0
    [step] = fanout_steps(store, run_id)
    assert (step.is_error, step.result, step.attempt) == (True, expected, 0)  # refused at the turn: never run
    assert s.result == f"Tool {ASSIGN_TASKS} returned: {expected}"
    store.engine.dispose()


def test_the_subagent_budget_and_the_spawn_cap_hold(tmp_path, sqlite_url, sim):
    store, run_id, s = run(tmp_path, sqlite_url, sim, "t #sim agents=8 fanout=1 tools=1 tool=echo", max_subagents=5)
    [step] = fanout_steps(store, run_id)
    assert step.result == prompts.FANOUT_OVER_BUDGET.format(count=8, left=5, limit=5)
    assert s.status == "succeeded" and s.subagents == 0 and children(store, step.id) == []

    s2 = make_settings(tmp_path, sqlite_url, sim.url, tool_assign_tasks=True)
    with LocalRuntime(s2, store=store) as rt:
        capped = rt.submit(run_spec(s2, "t #sim agents=8 fanout=1 tools=1 tool=echo", max_spawns_per_turn=4))
        assert rt.wait(capped, timeout=60).subagents == 0
        fits = rt.submit(run_spec(s2, "t #sim agents=4 fanout=1 tools=1 tool=echo", max_spawns_per_turn=4))
        assert rt.wait(fits, timeout=60).subagents == 4
    [step] = fanout_steps(store, capped)
    assert step.result == prompts.FANOUT_SPAWN_CAP.format(cap=4, count=8, used=0, left=4)
    store.engine.dispose()


def test_off_by_default_the_model_is_not_offered_assign_tasks(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with LocalRuntime(s) as rt:
        run_id = rt.submit(run_spec(s, "t #sim agents=2 fanout=1 tools=1 tool=echo"))
        summary = rt.wait(run_id, timeout=60)
        [step] = fanout_steps(rt.store, run_id)
    # Unknown: the tools offered to the model (what it may call) were Kimi's two and the others.
    assert summary.subagents == 0 and step.is_error and step.result.startswith("Unknown tool 'assign_tasks'")
    assert "assign_tasks" not in step.result.split("Available tools:")[1]
    tools = (
        [t["function"]["name"] for t in sim.log(run_id)[0].get("tools", [])] if "tools" in sim.log(run_id)[0] else []
    )
    assert ASSIGN_TASKS not in tools


@pytest.mark.timeout(300)
def test_a_fan_out_cancelled_midway_resumes_without_relaunching_or_repeating_a_call(tmp_path, db_url, sim):
    import time

    s = make_settings(tmp_path, db_url, sim.url, tool_assign_tasks=True)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, "t #sim agents=12 fanout=1 tools=3 tool=echo latency=0.05"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # some subagents done, others not
            steps = fanout_steps(store, run_id)
            kids = children(store, steps[0].id) if steps else []
            if any(k.status == "succeeded" for k in kids) and any(k.status == "running" for k in kids):
                break
            time.sleep(0.02)
        assert rt.store.cancel_run(run_id)
        rt.resume(run_id)
        summary = rt.wait(run_id, timeout=120)
    assert summary.status == "succeeded", summary.reason
    assert summary.result.startswith("Summary of 12 subagent reports: 12 ok, 0 errors")
    [step] = fanout_steps(store, run_id)
    assert len(children(store, step.id)) == 12 and summary.subagents == 12  # none launched again
    # Asked again: only calls in flight at the cancel (never committed), one per subagent at most.
    assert sim.stats()["duplicates"] <= 12
    store.engine.dispose()
