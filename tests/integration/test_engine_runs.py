"""The engine end to end on SQLite and PostgreSQL, with the simulated model over real HTTP."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import Message, Step
from swarm.store.store import StateStore
from tests.conftest import make_settings


def run_task(tmp_path, db_url, sim, task, timeout=240, **limits):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, task, **limits))
        summary = rt.wait(run_id, timeout=timeout)
    return store, run_id, summary


@pytest.mark.timeout(300)
def test_w1_completes_with_exact_counts_and_no_repeated_model_call(tmp_path, db_url, sim):
    store, run_id, s = run_task(tmp_path, db_url, sim, "W1 #sim agents=100 tools=15 tool=echo")

    assert s.status == "succeeded", s.reason
    assert (s.subagents, s.tool_calls, s.llm_calls) == (100, 1500, 1603)
    assert s.critical_steps == 19  # 1 + (1 + 16) + 1
    assert s.total_steps == 1603
    assert s.result.startswith("Summary of 100 subagent reports: 100 ok, 0 errors")
    stats = sim.stats()
    assert stats["by_run"][run_id] == 1603
    assert stats["duplicates"] == 0
    # Storage is linear in work: one row per message and per step, nothing re-stored.
    rows = store.storage_rows(run_id)
    assert rows["messages"] == 106 + 100 * 33
    assert rows["steps"] == (3 + 101) + 100 * (16 + 15)


def test_python_tool_runs_in_subagents(tmp_path, db_url, sim):
    _, run_id, s = run_task(tmp_path, db_url, sim, "small #sim agents=3 tools=2 tool=python")
    assert s.status == "succeeded", s.reason
    assert (s.subagents, s.tool_calls) == (3, 6)
    # The sim's subagent i prints i*1000+k; results reach the orchestrator's summary intact.
    assert "3 ok, 0 errors" in (s.result or "")


@pytest.mark.parametrize("fault", ["bad_json", "unknown_tool", "unknown_agent", "empty"])
def test_malformed_model_output_goes_back_as_tool_error_and_run_continues(tmp_path, sqlite_url, sim, fault):
    store, run_id, s = run_task(tmp_path, sqlite_url, sim, f"t #sim agents=2 tools=1 tool=echo fault={fault}")
    assert s.status == "succeeded", s.reason
    assert s.subagents == 2 and s.tool_calls == 2
    with store.read() as conn:
        msgs = conn.execute(select(Message.role, Message.content).where(Message.run_id == run_id)).all()
    texts = [str(m.content) for m in msgs]
    needle = {
        "bad_json": "not valid JSON",
        "unknown_tool": "Unknown tool 'teleport'",
        "unknown_agent": "No subagent named 'ghost'",
        "empty": "your last reply was empty",
    }[fault]
    assert any(needle in t for t in texts), texts


def test_subagent_and_tool_limits_hold_under_concurrency(tmp_path, db_url, sim):
    store, run_id, s = run_task(
        tmp_path, db_url, sim, "t #sim agents=12 tools=10 tool=echo", max_subagents=8, max_tool_calls=50
    )
    assert s.status == "succeeded", s.reason
    assert s.subagents == 8  # never more, though 12 were asked for in one turn
    assert s.tool_calls == 50  # exactly the budget: 8 subagents wanted 80
    with store.read() as conn:
        results = [r.result for r in conn.execute(select(Step.result).where(Step.run_id == run_id, Step.is_error))]
    assert sum("limit of 8 subagents" in (r or "") for r in results) == 4
    assert sum("limit of 50 tool calls" in (r or "") for r in results) == 30
    assert "8 ok, 4 errors" in (s.result or "")


def test_rate_limit_is_retried_then_succeeds(tmp_path, sqlite_url, sim):
    _, run_id, s = run_task(tmp_path, sqlite_url, sim, "t #sim agents=1 tools=1 tool=echo http=429x2")
    assert s.status == "succeeded", s.reason
    assert sim.stats()["errors"].get("429") == 2 or sim.stats()["errors"].get(429) == 2


@pytest.mark.parametrize(("http", "needle"), [("401", "LLMAuthError"), ("quota", "LLMQuotaExceeded")])
def test_auth_and_quota_errors_end_the_run_at_once(tmp_path, sqlite_url, sim, http, needle):
    import time

    t0 = time.monotonic()
    _, run_id, s = run_task(tmp_path, sqlite_url, sim, f"t #sim agents=1 tools=1 http={http}", timeout=30)
    assert time.monotonic() - t0 < 10
    assert s.status == "failed"
    assert needle in (s.reason or "")
    assert len(sim.log(run_id)) == 1  # never retried


def test_step_limit_ends_agent_with_clear_reason(tmp_path, sqlite_url, sim):
    # Subagents want 5 tool calls but may take only 3 steps: they fail, the orchestrator hears it.
    store, run_id, s = run_task(tmp_path, sqlite_url, sim, "t #sim agents=2 tools=5 tool=echo", max_steps=3)
    tree = store.agent_tree(run_id)
    subs = [a for a in tree if a["parent_id"]]
    assert all(a["status"] == "failed" and "step limit" in a["reason"] for a in subs)
    assert s.status == "succeeded"  # the orchestrator answered within its own 3 steps
    assert "0 ok, 2 errors" in (s.result or "")


def test_every_tool_call_result_is_recorded_once(tmp_path, db_url, sim):
    store, run_id, s = run_task(tmp_path, db_url, sim, "t #sim agents=5 tools=4 tool=echo")
    assert s.status == "succeeded"
    with store.read() as conn:
        ids = [
            r.tool_call_id
            for r in conn.execute(
                select(Message.agent_id, Message.tool_call_id).where(Message.run_id == run_id, Message.role == "tool")
            )
        ]
        steps = conn.execute(select(Step.id).where(Step.run_id == run_id, Step.kind == "tool")).all()
    assert len(ids) == len(steps) == 5 + 1 + 20
    per_agent = Counter(ids)
    assert max(per_agent.values()) <= 5  # tool call ids repeat only across different agents
