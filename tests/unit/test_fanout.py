"""Template fan-out as pure decisions (swarm/domain/fanout.py): prompts from a template and items,
the refusals the model gets, spawns counted per item by the spawn cap, the answers combined in
item order; and the assign_tasks schema offered only when switched on."""

from __future__ import annotations

import json

from swarm.constants import ASSIGN_TASKS, MAX_FANOUT_ITEMS
from swarm.domain import fanout, prompts
from swarm.domain.guards import LoopGuards, guard_turn
from swarm.domain.llm import LLMResponse, ToolCall
from swarm.domain.turns import TurnPlan
from swarm.engine.orchestration import ASSIGN_TASKS_SCHEMA, check_assign_tasks
from swarm.engine.planner import plan_turn

TOOLS = {"create_subagent", "assign_task", ASSIGN_TASKS, "echo"}


def turn(*calls: tuple[str, dict[str, object]]) -> TurnPlan:
    tool_calls = tuple(ToolCall(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(calls))
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


def fan(n: int) -> tuple[str, dict[str, object]]:
    return ASSIGN_TASKS, {"agent": "w", "prompt_template": "do {{item}}", "items": [str(i) for i in range(n)]}


def test_each_item_gets_the_template_with_its_item() -> None:
    assert fanout.expand("Review {{item}}, then {{item}} again", ["a.py", 7]) == (
        "Review a.py, then a.py again",
        "Review 7, then 7 again",
    )
    assert len(fanout.expand("x {{item}}", [str(i) for i in range(MAX_FANOUT_ITEMS)])) == MAX_FANOUT_ITEMS


def test_what_the_model_is_told_to_fix() -> None:
    assert fanout.expand("x {{item}}", [str(i) for i in range(129)]) == prompts.FANOUT_TOO_MANY.format(
        limit=128, count=129
    )
    assert fanout.expand("x {{item}}", ["a", "b", "a"]) == prompts.FANOUT_DUPLICATES.format(first=1, second=3)
    assert fanout.expand("x", ["a", "b"]).startswith("assign_tasks 'prompt_template' must contain {{item}}")
    assert fanout.expand("x {{item}}", []) == prompts.FANOUT_NO_ITEMS
    assert fanout.expand("x {{item}}", "abc") == prompts.FANOUT_NO_ITEMS
    assert fanout.expand("x {{item}}", ["a", True]) == prompts.FANOUT_BAD_ITEM.format(index=2, kind="bool")
    assert check_assign_tasks({"agent": "", "prompt_template": "x {{item}}", "items": ["a"]}) is not None
    assert check_assign_tasks({"agent": "w", "prompt_template": "x {{item}}", "items": ["a"]}) is None


def test_a_call_spawns_one_subagent_per_item_and_the_spawn_cap_counts_them() -> None:
    plan = turn(fan(3), ("assign_task", {"agent": "w", "prompt": "p"}), fan(2))
    assert [c.spawns for c in plan.calls] == [3, 1, 2]
    out = guard_turn(plan, {}, LoopGuards(max_repeats=3, max_spawns_per_turn=4))
    # 3 + 1 fit; the last call's 2 would pass the cap: refused whole, nothing of it launched.
    assert [c.error for c in out.calls] == [
        None,
        None,
        prompts.FANOUT_SPAWN_CAP.format(cap=4, count=2, used=4, left=0),
    ]
    assert turn(fan(129)).calls[0].spawns == 0  # refused at planning: launches nothing


def test_answers_come_back_in_item_order_each_labelled() -> None:
    text = fanout.combine(["a", "b"], [fanout.Answer(True, "A done"), fanout.Answer(False, "it broke")])
    assert text.splitlines() == [
        "assign_tasks: 2 subagents, 1 answered, 1 failed. Their answers, in item order:",
        "",
        "=== item 1/2: a (answer) ===",
        "A done",
        "",
        "=== item 2/2: b (failed) ===",
        "it broke",
    ]


def test_the_schema_caps_the_items() -> None:
    params = ASSIGN_TASKS_SCHEMA["function"]["parameters"]
    assert params["required"] == ["agent", "prompt_template", "items"]
    assert params["properties"]["items"]["maxItems"] == MAX_FANOUT_ITEMS
