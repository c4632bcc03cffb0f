import pytest

from swarm.domain.llm import LLMResponse, ToolCall
from swarm.domain.turns import TurnKind
from swarm.engine.planner import plan_turn

TOOLS = {"create_subagent", "assign_task", "python", "echo"}


def response(content=None, *calls):
    return LLMResponse(
        content=content,
        reasoning_content="r",
        tool_calls=tuple(calls),
        finish_reason=None,
        tokens_in=1,
        tokens_out=1,
        model="m",
    )


def test_tool_calls_are_planned_in_order():
    plan = plan_turn(
        response(
            None,
            ToolCall("functions.echo:0", "echo", '{"text": "a"}'),
            ToolCall("functions.python:1", "python", '{"code": "print(1)"}'),
        ),
        TOOLS,
        last_step=False,
    )
    assert plan.kind == TurnKind.TOOLS
    assert [c.name for c in plan.calls] == ["echo", "python"]
    assert all(c.error is None for c in plan.calls)
    assert plan.calls[0].args == {"text": "a"}


@pytest.mark.parametrize(
    ("name", "raw", "needle"),
    [
        ("assign_task", '{"agent": "worker", "prompt": ', "not valid JSON"),
        ("teleport", "{}", "Unknown tool 'teleport'"),
        ("echo", "[1, 2]", "must be a JSON object"),
        ("assign_task", '{"agent": "worker"}', "non-empty 'prompt'"),
        ("create_subagent", '{"name": "", "system_prompt": "x"}', "create_subagent needs 'name'"),
    ],
)
def test_malformed_calls_become_tool_errors(name, raw, needle):
    plan = plan_turn(response(None, ToolCall("id0", name, raw)), TOOLS, last_step=False)
    assert plan.kind == TurnKind.TOOLS
    assert needle in (plan.calls[0].error or "")


def test_empty_reply_is_nudged():
    assert plan_turn(response("  "), TOOLS, last_step=False).kind == TurnKind.NUDGE


def test_content_without_tools_is_final():
    plan = plan_turn(response("the answer"), TOOLS, last_step=False)
    assert plan.kind == TurnKind.FINAL and plan.final_text == "the answer"


def test_tool_calls_on_the_last_step_hit_the_step_limit():
    plan = plan_turn(response(None, ToolCall("id0", "echo", "{}")), TOOLS, last_step=True)
    assert plan.kind == TurnKind.STEP_LIMIT


def test_final_answer_on_the_last_step_is_accepted():
    assert plan_turn(response("done"), TOOLS, last_step=True).kind == TurnKind.FINAL


def test_empty_arguments_mean_no_arguments():
    plan = plan_turn(response(None, ToolCall("id0", "echo", "")), TOOLS, last_step=False)
    assert plan.calls[0].args == {} and plan.calls[0].error is None
