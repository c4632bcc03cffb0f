"""The simulated swarm's script, driven the way the engine drives a model."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from swarm.sim import params, script, wire
from swarm.sim.params import SimParams, parse_directive

ORCH_SYSTEM = "You are the orchestrator."
DEFAULTS = SimParams()


def ask(messages: list[dict[str, Any]], params: SimParams = DEFAULTS, **body: Any) -> dict[str, Any]:
    """One model call: the request must be one the real API accepts, the reply one message."""
    request = {"model": "kimi-k2.5", "messages": messages, **body}
    assert wire.validate_request(request) is None
    completion = script.reply(request, params)
    assert completion["object"] == "chat.completion"
    return dict(completion["choices"][0]["message"])


def fake_python(code: str) -> str:
    return str(re.findall(r"print\((\d+)\)", code)[0]) + "\n"


class Engine:
    """A minimal engine: runs subagents inline and fabricates tool results."""

    def __init__(self, params: SimParams = DEFAULTS) -> None:
        self.params = params
        self.agents: dict[str, str] = {}
        #: (system prompt, reply) of every model call, in order.
        self.replies: list[tuple[str, dict[str, Any]]] = []

    def tool(self, name: str, arguments: str) -> str:
        try:
            args = json.loads(arguments)
        except json.JSONDecodeError:
            return "Error: arguments are not valid JSON"
        if name == "create_subagent":
            self.agents[args["name"]] = args["system_prompt"]
            return f"Created subagent {args['name']}"
        if name == "assign_task":
            if args["agent"] not in self.agents:
                return f"Error: unknown agent {args['agent']}"
            return self.converse(self.agents[args["agent"]], args["prompt"])
        if name == "python":
            return fake_python(str(args["code"]))
        if name == "echo":
            return str(args["text"])
        return f"Error: unknown tool {name}"

    def converse(self, system: str, user: str, limit: int = 50) -> str:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for _ in range(limit):
            msg = ask(messages, self.params)
            self.replies.append((system, msg))
            messages.append(msg)
            calls = msg.get("tool_calls") or []
            if not calls:
                if msg["content"]:
                    return str(msg["content"])
                messages.append({"role": "user", "content": "Please continue."})
                continue
            for call in calls:
                fn = call["function"]
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": self.tool(fn["name"], fn["arguments"])}
                )
        raise AssertionError("conversation did not finish")


# --------------------------------------------------------------------------- directives


def test_parse_directive_reads_pairs_and_normalises_keys() -> None:
    text = "Please research X.\n#sim agents=100 tools=15 latency=1.0 Tool-Latency=0.5 tool=echo"
    assert parse_directive(text) == {
        "agents": "100",
        "tools": "15",
        "latency": "1.0",
        "tool_latency": "0.5",
        "tool": "echo",
    }


def test_parse_directive_is_robust() -> None:
    assert parse_directive("no directive here agents=5") == {}
    assert parse_directive("") == {}
    assert parse_directive("#sim") == {}
    assert parse_directive('#SIM agents = 7, fault="empty"; junk') == {"agents": "7", "fault": "empty"}
    assert parse_directive("#sim agents=2\n#sim agents=4 tools=1") == {"agents": "4", "tools": "1"}
    # The directive only runs to the end of its line.
    assert parse_directive("#sim agents=2\ntools=9") == {"agents": "2"}


def test_merged_applies_valid_values_and_ignores_the_rest() -> None:
    d = parse_directive(
        "#sim agents=5 tools=0 tool=python latency=0.25 fault=bad_json http=429x2 thinking=false colour=blue"
    )
    p = SimParams().merged(d)
    assert p == SimParams(agents=5, tools=0, latency=0.25, fault="bad_json", http="429x2", thinking=False)
    bad = SimParams().merged(
        parse_directive(
            "#sim agents=0 tools=-1 tool=bash latency=nan tool_latency=-2 fault=fire http=teapot thinking=maybe"
        )
    )
    assert bad == SimParams()
    assert SimParams(fault="empty", http="401").merged({"fault": "none", "http": "none"}) == (SimParams())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("429x2", params.HttpFault(429, "rate_limit_reached_error", 2)),
        ("500x1", params.HttpFault(500, "server_error", 1)),
        ("401", params.HttpFault(401, "invalid_authentication_error")),
        ("403", params.HttpFault(403, "permission_denied_error")),
        ("quota", params.HttpFault(429, "exceeded_current_quota_error")),
        ("200", None),
        ("oops", None),
        (None, None),
    ],
)
def test_parse_http_fault(spec: str | None, expected: params.HttpFault | None) -> None:
    assert params.parse_http_fault(spec) == expected


def test_only_transient_rate_limits_suggest_retry_after() -> None:
    assert params.HttpFault(429, "rate_limit_reached_error", 2).retry_after == 0.05
    assert params.HttpFault(429, "exceeded_current_quota_error").retry_after is None


# --------------------------------------------------------------------------- orchestrator


def orch(user: str = "Research the thing.") -> list[dict[str, Any]]:
    return [{"role": "system", "content": ORCH_SYSTEM}, {"role": "user", "content": user}]


def test_turn0_creates_the_worker_with_kimi_ids_and_reasoning() -> None:
    msg = ask(orch())
    assert msg["reasoning_content"]
    assert msg["content"] == ""
    [call] = msg["tool_calls"]
    assert call["id"] == "functions.create_subagent:0"
    assert call["type"] == "function"
    assert call["function"]["name"] == "create_subagent"
    args = json.loads(call["function"]["arguments"])
    assert args == {"name": "worker", "system_prompt": script.WORKER_SYSTEM_PROMPT}
    assert script.SUBAGENT_MARKER in args["system_prompt"]


def test_full_swarm_default_params() -> None:
    engine = Engine()
    final = engine.converse(ORCH_SYSTEM, "Research the thing.")
    # fake_python ends its output with a newline; the subagent strips results before joining.
    reports = [f"Task {i} done: {i * 1000};{i * 1000 + 1}" for i in (1, 2, 3)]
    digest = hashlib.sha256("".join(reports).encode()).hexdigest()[:12]
    assert final == f"Summary of 3 subagent reports: 3 ok, 0 errors. digest={digest}"
    # 3 orchestrator turns + 3 subagents x (2 tool turns + 1 answer).
    assert len(engine.replies) == 3 + 3 * 3
    assert all(r["reasoning_content"] for _, r in engine.replies)


def test_fan_out_is_one_reply_with_n_assign_tasks() -> None:
    params = SimParams(agents=4, tools=3, tool="echo", tool_latency=0.5, latency=0.1)
    messages = orch()
    first = ask(messages, params)
    messages += [first, {"role": "tool", "tool_call_id": "functions.create_subagent:0", "content": "ok"}]
    fan_out = ask(messages, params)
    calls = fan_out["tool_calls"]
    assert [c["id"] for c in calls] == [f"functions.assign_task:{i}" for i in range(1, 5)]
    prompts = [json.loads(c["function"]["arguments"]) for c in calls]
    assert prompts[0] == {
        "agent": "worker",
        "prompt": ("Task 1 of 4. #sim tools=3 tool=echo tool_latency=0.5 latency=0.1"),
    }
    assert [p["prompt"].split(".")[0] for p in prompts] == [f"Task {i} of 4" for i in range(1, 5)]


def test_directive_in_first_user_message_overrides_server_defaults() -> None:
    engine = Engine(SimParams(agents=9, tools=9))
    final = engine.converse(ORCH_SYSTEM, "Go.\n#sim agents=2 tools=1 tool=echo")
    assert final.startswith("Summary of 2 subagent reports: 2 ok, 0 errors.")
    echoes = [
        c["function"] for _, r in engine.replies for c in r.get("tool_calls") or [] if c["function"]["name"] == "echo"
    ]
    assert [json.loads(f["arguments"]) for f in echoes] == [{"text": "task 1 step 0"}, {"text": "task 2 step 0"}]


def test_summary_counts_failed_subagents_and_follows_call_order() -> None:
    messages = orch("#sim agents=2")
    messages.append(ask(messages))
    messages.append({"role": "tool", "tool_call_id": "functions.create_subagent:0", "content": "ok"})
    messages.append(ask(messages))
    # Results arrive out of order and one subagent failed.
    messages.append({"role": "tool", "tool_call_id": "functions.assign_task:2", "content": "Error: subagent crashed"})
    messages.append({"role": "tool", "tool_call_id": "functions.assign_task:1", "content": "Task 1 done: 1000;1001"})
    final = ask(messages)
    digest = hashlib.sha256(b"Task 1 done: 1000;1001Error: subagent crashed").hexdigest()[:12]
    assert final["content"] == f"Summary of 2 subagent reports: 1 ok, 1 errors. digest={digest}"
    assert "tool_calls" not in final


# --------------------------------------------------------------------------- subagent


def sub(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": script.WORKER_SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def test_subagent_python_calls_then_answers() -> None:
    messages = sub("Task 7 of 9. #sim tools=2 tool=python tool_latency=0 latency=0")
    first = ask(messages)
    assert json.loads(first["tool_calls"][0]["function"]["arguments"]) == {"code": "print(7000)"}
    assert first["tool_calls"][0]["id"] == "functions.python:0"
    messages += [first, {"role": "tool", "tool_call_id": "functions.python:0", "content": "7000"}]
    second = ask(messages)
    assert second["tool_calls"][0]["id"] == "functions.python:1"
    messages += [second, {"role": "tool", "tool_call_id": "functions.python:1", "content": "7001\n"}]
    final = ask(messages)
    assert final["content"] == "Task 7 done: 7000;7001"
    assert "tool_calls" not in final


def test_subagent_tool_latency_makes_the_code_sleep() -> None:
    msg = ask(sub("Task 2 of 2. #sim tools=1 tool=python tool_latency=0.5"))
    code = json.loads(msg["tool_calls"][0]["function"]["arguments"])["code"]
    assert code == "import time; time.sleep(0.5)\nprint(2000)"
    compile(code, "<sim>", "exec")  # valid python, checked without sleeping


def test_subagent_with_zero_tools_answers_at_once() -> None:
    msg = ask(sub("Task 3 of 3. #sim tools=0"))
    assert msg["content"] == "Task 3 done: "
    assert "tool_calls" not in msg


def test_subagent_ignores_orchestrator_faults() -> None:
    msg = ask(sub("Task 1 of 1. #sim tools=1"), SimParams(fault="empty"))
    assert msg["tool_calls"][0]["function"]["name"] == "python"


# --------------------------------------------------------------------------- faults


def after_create(params: SimParams) -> list[dict[str, Any]]:
    messages = orch()
    messages.append(ask(messages, params))
    messages.append({"role": "tool", "tool_call_id": "functions.create_subagent:0", "content": "ok"})
    return messages


def test_fault_bad_json() -> None:
    msg = ask(after_create(SimParams(fault="bad_json")), SimParams(fault="bad_json"))
    [call] = msg["tool_calls"]
    assert call["function"]["name"] == "assign_task"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["function"]["arguments"])


def test_fault_unknown_tool() -> None:
    msg = ask(after_create(SimParams(fault="unknown_tool")), SimParams(fault="unknown_tool"))
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["teleport"]
    assert msg["tool_calls"][0]["id"] == "functions.teleport:1"


def test_fault_unknown_agent() -> None:
    msg = ask(after_create(SimParams(fault="unknown_agent")), SimParams(fault="unknown_agent"))
    [call] = msg["tool_calls"]
    assert json.loads(call["function"]["arguments"])["agent"] == "ghost"


def test_fault_empty() -> None:
    msg = ask(after_create(SimParams(fault="empty")), SimParams(fault="empty"))
    assert msg["content"] == ""
    assert "tool_calls" not in msg


@pytest.mark.parametrize("fault", params.FAULTS)
def test_every_fault_costs_one_extra_turn_then_the_swarm_completes(fault: str) -> None:
    engine = Engine(SimParams(agents=2, tools=1))
    final = engine.converse(ORCH_SYSTEM, f"Work.\n#sim fault={fault}")
    assert final.startswith("Summary of 2 subagent reports: 2 ok, 0 errors.")
    # create_subagent, the fault, the fan-out, the summary.
    assert sum(1 for system, _ in engine.replies if system == ORCH_SYSTEM) == 4


def test_empty_fault_survives_an_engine_that_drops_the_empty_reply() -> None:
    params = SimParams(fault="empty")
    messages = after_create(params)
    assert ask(messages, params)["content"] == ""
    messages.append({"role": "user", "content": "Please continue."})
    fan_out = ask(messages, params)
    assert len(fan_out["tool_calls"]) == 3
    messages.append(fan_out)
    for call in fan_out["tool_calls"]:
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": "Task 1 done: x"})
    assert ask(messages, params)["content"].startswith("Summary of 3 subagent reports: 3 ok")


# --------------------------------------------------------------------------- reply shape


def test_completion_body_shape_and_usage() -> None:
    messages = orch()
    body = script.reply({"model": "my-model", "messages": messages}, SimParams())
    assert body["model"] == "my-model"
    assert body["created"] == script.CREATED
    assert body["id"].startswith("chatcmpl-sim-")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert isinstance(choice["message"]["tool_calls"][0]["function"]["arguments"], str)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Pure: same request, same reply.
    assert script.reply({"model": "my-model", "messages": messages}, SimParams()) == body


def test_final_answer_finishes_with_stop() -> None:
    body = script.reply({"messages": sub("Task 1 of 1. #sim tools=0")}, SimParams())
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == script.DEFAULT_MODEL


def test_no_reasoning_when_thinking_is_off() -> None:
    assert "reasoning_content" not in ask(orch(), SimParams(thinking=False))
    assert "reasoning_content" not in ask(orch("#sim thinking=false"))
    msg = ask(orch(), SimParams(), thinking={"type": "disabled"}, temperature=0.6)
    assert "reasoning_content" not in msg
    msg = ask(orch(), SimParams(), chat_template_kwargs={"thinking": False})
    assert "reasoning_content" not in msg


def test_subagent_directive_carries_thinking_off() -> None:
    assert SimParams(thinking=False).subagent_directive().endswith(" thinking=false")
    assert "thinking" not in SimParams().subagent_directive()


def test_content_parts_are_read_as_text() -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": script.WORKER_SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Task 5 of 5. "}, {"type": "text", "text": "#sim tool=echo"}],
        },
    ]
    msg = ask(messages)
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"text": "task 5 step 0"}


def test_request_and_conversation_keys() -> None:
    a = orch()
    b = [*orch(), {"role": "assistant", "content": "hi"}]
    assert script.request_key(a) == script.request_key(json.loads(json.dumps(a)))
    assert script.request_key(a) != script.request_key(b)
    assert script.conversation_key(a) == script.conversation_key(b)
    assert script.conversation_key(a, "run-1") != script.conversation_key(a, "run-2")
    assert script.conversation_key(sub("x")) != script.conversation_key(
        [{"role": "system", "content": ORCH_SYSTEM}, {"role": "user", "content": "x"}]
    )


# --------------------------------------------------------------------------- wire checks


def test_validate_rejects_missing_reasoning_content_when_thinking() -> None:
    messages = orch()
    msg = ask(messages)
    stripped = {k: v for k, v in msg.items() if k != "reasoning_content"}
    tool = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "ok"}
    problem = wire.validate_request({"messages": [*messages, stripped, tool]})
    assert problem == ("thinking is enabled but reasoning_content is missing in assistant tool call message at index 2")
    assert wire.validate_request({"messages": [*messages, stripped, tool], "thinking": {"type": "disabled"}}) is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({"messages": []}, "non-empty"),
        ({"messages": "hi"}, "non-empty"),
        ({"messages": ["hi"]}, "must be an object"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "invalid role"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 0.3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 0.6}, "only 1.0"),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": 1.0, "thinking": {"type": "disabled"}},
            "only 0.6",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "functions.x:0", "content": "y"},
                ]
            },
            "not found",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ],
)
def test_validate_rejects(body: Any, fragment: str) -> None:
    problem = wire.validate_request(body)
    assert problem is not None
    assert fragment in problem


def test_validate_requires_every_tool_call_answered() -> None:
    messages = orch()
    msg = ask(messages)
    problem = wire.validate_request({"messages": [*messages, msg, {"role": "user", "content": "?"}]})
    assert problem is not None
    assert "functions.create_subagent:0" in problem


def test_validate_accepts_the_right_temperatures() -> None:
    user = [{"role": "user", "content": "x"}]
    assert wire.validate_request({"messages": user, "temperature": 1}) is None
    assert (
        wire.validate_request({"messages": user, "temperature": 0.6, "chat_template_kwargs": {"thinking": False}})
        is None
    )
