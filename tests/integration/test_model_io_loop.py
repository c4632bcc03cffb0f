"""Model calls wait on the process's event loop, not on threads (issue 11, parts 4 and 5)."""

from __future__ import annotations

import threading

import pytest

from swarm.runtime import LocalRuntime, run_spec
from swarm.store.store import StateStore
from tests.conftest import make_settings


@pytest.mark.timeout(300)
def test_one_process_holds_far_more_concurrent_model_calls_than_it_has_threads(tmp_path, sqlite_url, sim):
    # 4 threads for model steps' database work and 4 for tools: 300 subagents still call the
    # model at once, because a call in flight holds a coroutine on the model loop, not a thread.
    s = make_settings(tmp_path, sqlite_url, sim.url, llm_max_concurrency=4, tool_concurrency=4)
    store = StateStore.from_url(sqlite_url, pool_size=8)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(
            run_spec(s, "wide #sim agents=300 tools=1 tool=echo latency=3", max_subagents=400, max_tool_calls=1000)
        )
        threads = threading.active_count()
        summary = rt.wait(run_id, timeout=240)

    assert summary.status == "succeeded", summary.reason
    assert (summary.subagents, summary.tool_calls, summary.llm_calls) == (300, 300, 603)
    stats = sim.stats()
    assert stats["duplicates"] == 0
    assert stats["peak_in_flight"] >= 250, stats["peak_in_flight"]
    assert threads < 60  # nothing close to one thread per call


@pytest.mark.timeout(120)
def test_the_memory_budget_bounds_calls_in_flight_per_process(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url, llm_max_in_flight=7)
    from swarm.llm.limiter import _forget_after_fork

    _forget_after_fork()  # the process-wide limiter of this budget is made fresh for the test
    store = StateStore.from_url(sqlite_url, pool_size=8)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, "bounded #sim agents=30 tools=1 tool=echo latency=0.5"))
        summary = rt.wait(run_id, timeout=100)

    assert summary.status == "succeeded", summary.reason
    assert sim.stats()["peak_in_flight"] <= 7
