"""Loop guards (swarm/domain/guards.py) as pure decisions, their settings and inputs, and the
simulator's scenarios that drive them end to end (tests/integration/test_loop_guards.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from swarm.config import Settings
from swarm.domain import guards, prompts
from swarm.domain.guards import LoopGuards, call_key, guard_turn
from swarm.domain.llm import LLMResponse, ToolCall
from swarm.domain.turns import TurnPlan
from swarm.engine.planner import plan_turn
from swarm.exceptions import InputError
from swarm.runs.base import RunRequest
from swarm.sim.params import SimParams
from tests.unit.test_sim_script import ORCH_SYSTEM, Engine, ask, sub

TOOLS = {"create_subagent", "assign_task", "python", "echo"}


def turn(*calls: tuple[str, str]) -> TurnPlan:
    tool_calls = tuple(ToolCall(f"call_{i}", name, raw) for i, (name, raw) in enumerate(calls))
    response = LLMResponse(
        content=None,
        reasoning_content="r",
        tool_calls=tool_calls,
        finish_reason=None,
        tokens_in=1,
        tokens_out=1,
        model="m",
    )
    return plan_turn(response, TOOLS, last_step=False)


def errors(plan: TurnPlan) -> list[str | None]:
    return [c.error for c in plan.calls]


def test_identical_means_same_tool_and_canonical_arguments() -> None:
    assert call_key("echo", {"a": 1, "b": [1, {"y": 2, "x": 1}]}) == call_key(
        "echo", json.loads('{ "b" : [1, {"x": 1, "y": 2}], "a": 1 }')
    )
    assert call_key("echo", {"a": 1}) != call_key("python", {"a": 1})
    assert call_key("echo", {"a": 1}) != call_key("echo", {"a": "1"})
    assert len(call_key("echo", {})) == 64  # fits steps.call_key
    # The key of a parsed call is its tool and arguments, whatever the JSON text's spacing.
    spaced, tight = turn(("echo", '{"text": "x", "n": 1}'), ("echo", '{"n":1,"text":"x"}')).calls
    assert guards.planned_key(spaced) == guards.planned_key(tight) == call_key("echo", {"text": "x", "n": 1})


def test_the_call_after_max_repeats_runs_is_refused() -> None:
    plan = turn(("echo", '{"text": "x"}'))
    key = call_key("echo", {"text": "x"})
    assert errors(guard_turn(plan, {key: 2}, LoopGuards(max_repeats=3))) == [None]
    [refused] = guard_turn(plan, {key: 3}, LoopGuards(max_repeats=3)).calls
    assert refused.error == prompts.REPEATED_CALL.format(name="echo", limit=3)
    assert "not run again" in refused.error
    # Another argument, or another tool, is another call.
    other = turn(("echo", '{"text": "y"}'), ("python", '{"text": "x"}'))
    assert errors(guard_turn(other, {key: 9}, LoopGuards(max_repeats=3))) == [None, None]


def test_identical_calls_of_the_same_turn_count_too() -> None:
    plan = turn(*[("echo", '{"text": "x"}')] * 4, ("echo", '{"text": "y"}'))
    out = guard_turn(plan, {call_key("echo", {"text": "x"}): 1}, LoopGuards(max_repeats=3))
    assert [e is None for e in errors(out)] == [True, True, False, False, True]
    assert guard_turn(plan, {}, LoopGuards(max_repeats=1)).calls[1].error is not None


def test_calls_refused_for_other_reasons_are_left_alone_and_not_counted() -> None:
    plan = turn(("teleport", "{}"), ("echo", "[1]"), ("echo", '{"text": "x"}'))
    out = guard_turn(plan, {}, LoopGuards(max_repeats=1))
    assert errors(out)[:2] == errors(plan)[:2] and all(errors(out)[:2])
    assert errors(out)[2] is None


def assigns(n: int, agent: str = "worker") -> TurnPlan:
    return turn(*[("assign_task", json.dumps({"agent": agent, "prompt": f"Task {i}"})) for i in range(1, n + 1)])


def test_spawn_cap_refuses_the_assign_tasks_past_it_in_order() -> None:
    out = guard_turn(assigns(5), {}, LoopGuards(max_repeats=3, max_spawns_per_turn=3))
    assert errors(out) == [None, None, None, prompts.SPAWN_CAP.format(cap=3), prompts.SPAWN_CAP.format(cap=3)]
    assert "later turn" in (errors(out)[3] or "")
    assert [c.launches_subagent for c in out.calls] == [True, True, True, False, False]
    # No cap: only the run's budget limits them (domain/limits.py).
    assert errors(guard_turn(assigns(5), {}, LoopGuards(max_repeats=3))) == [None] * 5


def test_spawn_cap_counts_only_launches() -> None:
    # Other tools, create_subagent, and an assign_task refused as a repeat take no spawn.
    repeated = json.dumps({"agent": "worker", "prompt": "again"})
    plan = turn(
        ("create_subagent", '{"name": "w", "system_prompt": "s"}'),
        ("echo", '{"text": "x"}'),
        ("assign_task", repeated),
        ("assign_task", '{"agent": "worker", "prompt": "a"}'),
        ("assign_task", '{"agent": "worker", "prompt": "b"}'),
    )
    ran = {call_key("assign_task", json.loads(repeated)): 3}
    out = guard_turn(plan, ran, LoopGuards(max_repeats=3, max_spawns_per_turn=1))
    assert [e is None for e in errors(out)] == [True, True, False, True, False]
    assert errors(out)[2] == prompts.REPEATED_CALL.format(name="assign_task", limit=3)


def test_settings_refuse_max_repeats_below_one() -> None:
    assert Settings(_env_file=None).max_repeats == 3  # type: ignore[call-arg]
    assert Settings(_env_file=None, max_repeats=1).max_repeats == 1  # type: ignore[call-arg]
    for bad in (0, -2):
        with pytest.raises(ValidationError, match="max_repeats"):
            Settings(_env_file=None, max_repeats=bad)  # type: ignore[call-arg]


def test_max_spawns_per_turn_below_one_is_bad_input() -> None:
    assert RunRequest(task="t", max_spawns_per_turn=1).limits() == {"max_spawns_per_turn": 1}
    assert RunRequest(task="t").limits() == {}
    for bad in (0, -1):
        with pytest.raises(
            InputError, match=r"max_spawns_per_turn \(--max-spawns-per-turn\) must be a whole number at least 1"
        ):
            RunRequest(task="t", max_spawns_per_turn=bad)


# --------------------------------------------------------------------------- the simulator


def test_sim_repeat_scenario_makes_one_identical_call_every_step() -> None:
    for tool in ("python", "echo"):
        messages: list[dict[str, Any]] = sub(f"Task 4 of 5. #sim tools=3 tool={tool} scenario=repeat")
        seen = set()
        for k in range(3):
            msg = ask(messages)
            [call] = msg["tool_calls"]
            seen.add((call["function"]["name"], call["function"]["arguments"]))
            messages += [msg, {"role": "tool", "tool_call_id": call["id"], "content": f"r{k}"}]
        [(name, arguments)] = seen
        assert name == tool
        assert ask(messages)["content"] == "Task 4 done: r0;r1;r2"
        if tool == "python":
            code = json.loads(arguments)["code"]
            assert "repeat_4.txt" in code
            compile(code, "<sim>", "exec")
    assert "scenario=repeat" in SimParams(scenario="repeat").subagent_directive()


class CappedEngine(Engine):
    """The test engine with a spawn cap: assign_task calls past ``cap`` in one turn are refused."""

    def __init__(self, params: SimParams, cap: int) -> None:
        super().__init__(params)
        self.cap = cap
        self.launched_per_turn: list[int] = []

    def converse(self, system: str, user: str, limit: int = 50) -> str:
        if system != ORCH_SYSTEM:
            return super().converse(system, user, limit)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for _ in range(limit):
            msg = ask(messages, self.params)
            messages.append(msg)
            if not msg.get("tool_calls"):
                return str(msg["content"])
            spawns = 0
            for call in msg["tool_calls"]:
                fn = call["function"]
                if fn["name"] == "assign_task":
                    spawns += 1
                    if spawns > self.cap:
                        content = prompts.SPAWN_CAP.format(cap=self.cap)
                        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
                        continue
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": self.tool(fn["name"], fn["arguments"])}
                )
            self.launched_per_turn.append(min(spawns, self.cap))
        raise AssertionError("conversation did not finish")


def test_sim_orchestrator_assigns_what_the_spawn_cap_refused_in_its_next_turns() -> None:
    params = SimParams(agents=5, tools=1, tool="echo")
    capped = CappedEngine(params, cap=2)
    final = capped.converse(ORCH_SYSTEM, "Work.")
    assert capped.launched_per_turn == [0, 2, 2, 1]  # create; 2 (3 refused); 2 (1 refused); 1
    # Every task's latest result counts, in the first fan-out's order: as if nothing was capped.
    uncapped = Engine(params).converse(ORCH_SYSTEM, "Work.")
    assert final == uncapped and final.startswith("Summary of 5 subagent reports: 5 ok, 0 errors.")
