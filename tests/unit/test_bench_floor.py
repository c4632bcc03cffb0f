"""The floor driver (bench/floor.py) plays a tiny W1 to the end against a real SimServer.

Counts only, no timings: the floor is a yardstick, and a yardstick that miscounts (or sends
requests the model would reject) makes every benchmark ratio built on it wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.floor import FloorResult, run_floor
from swarm.sim import SimConfig, SimServer


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(port=0)) as server:
        yield server


def _play(sim: SimServer, agents: int, tools: int, tool: str) -> FloorResult:
    return asyncio.run(run_floor(sim.url, agents, tools, tool, 0.0))


def test_floor_plays_a_tiny_w1_with_exact_counts(sim: SimServer) -> None:
    res = _play(sim, agents=3, tools=2, tool="echo")

    assert res.errors == []
    assert res.result.startswith("Summary of 3 subagent reports: 3 ok, 0 errors.")
    # Orchestrator: create_subagent turn, assign_task turn, summary = 3 calls; each subagent:
    # 2 tool turns + its answer = 3 calls.
    assert res.llm_calls == 3 + 3 * 3
    assert res.total_steps == res.llm_calls
    assert res.tool_calls == 3 * 2
    assert res.steps == 12 + 6
    assert res.subagents == 3
    assert res.orchestration_calls == 1 + 3
    # Critical steps: 1 (create) + (1 + 3, the longest subagent) + 1 (summary).
    assert res.critical_steps == 6
    # Every request was accepted as Kimi would accept it (reasoning_content sent back on
    # tool-call turns, tool results answering every call) and none was sent twice.
    stats = sim.stats()
    assert stats["requests"] == 12
    assert stats["errors"] == {}
    assert stats["duplicates"] == 0


def test_floor_runs_the_real_python_tool(sim: SimServer) -> None:
    res = _play(sim, agents=2, tools=1, tool="python")

    assert res.errors == []
    assert (res.llm_calls, res.tool_calls, res.critical_steps) == (3 + 2 * 2, 2, 5)
    assert res.result.startswith("Summary of 2 subagent reports: 2 ok, 0 errors.")
    assert res.tool_seconds > 0


def test_floor_does_the_same_work_as_swarm(sim: SimServer) -> None:
    # The sim's summary digest hashes every subagent's report, which holds every tool result:
    # equal final answers mean the floor did the same work as swarm embedded (bench.w1's path).
    from bench.w1 import run_swarm

    floor = _play(sim, agents=5, tools=3, tool="echo")
    swarm = run_swarm(sim.url, 5, 3, "echo", 0.0)

    assert swarm.status == "succeeded"
    assert floor.result == swarm.result
    assert (floor.llm_calls, floor.tool_calls, floor.critical_steps) == (
        swarm.llm_calls,
        swarm.tool_calls,
        swarm.critical_steps,
    )
