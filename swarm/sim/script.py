"""What the simulated Kimi swarm says: a pure function of one chat-completions request.

The sim keeps no conversation state. Everything it needs (which role it plays, which turn it
is on, what the tools returned) is read back from the ``messages`` the engine sends, exactly
as a real model would have to. That makes replies reproducible across engine restarts and
retries, which is what lets tests detect a repeated LLM call as a byte-identical request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT, FANOUT_PLACEHOLDER
from swarm.domain.prompts import SPAWN_CAP
from swarm.sim import wire
from swarm.sim.params import SimParams, decode_args, parse_directive

#: Written by the sim into the subagent's system prompt, so the sim recognises its own workers.
SUBAGENT_MARKER = "[sim-subagent]"
WORKER_NAME = "worker"
WORKER_SYSTEM_PROMPT = (
    f"You are a worker subagent {SUBAGENT_MARKER}. Do the task with your tools, one call per turn, then answer."
)
DEFAULT_MODEL = "kimi-k2.5-sim"
#: A fixed ``created`` keeps whole responses reproducible.
CREATED = 1_700_000_000
#: The sim counts a token per 4 characters of canonical JSON.
CHARS_PER_TOKEN = 4
#: Kimi's prefix cache works in blocks of this many tokens.
CACHE_CHUNK_TOKENS = 256

# --------------------------------------------------------------------------- reading requests


def message_text(content: Any) -> str:
    """The text of a message ``content``: a string, None, or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # One part a line: a directive in the task must not run into an attached file's text.
        return "\n".join(str(p["text"]) for p in content if isinstance(p, dict) and "text" in p)
    return ""


def image_parts(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many image parts (``image_url``) the request's messages carry."""
    return sum(
        1
        for m in messages
        if isinstance(m, Mapping) and isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, Mapping) and p.get("type") == "image_url"
    )


def _role_messages(messages: Sequence[Mapping[str, Any]], role: str) -> list[Mapping[str, Any]]:
    return [m for m in messages if isinstance(m, Mapping) and m.get("role") == role]


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    users = _role_messages(messages, "user")
    return message_text(users[0].get("content")) if users else ""


def is_subagent(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(SUBAGENT_MARKER in message_text(m.get("content")) for m in _role_messages(messages, "system"))


def resolve_params(messages: Sequence[Mapping[str, Any]], defaults: SimParams) -> SimParams:
    return defaults.merged(parse_directive(first_user_text(messages)))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the canonical messages: equal keys mean the same LLM call was made twice."""
    return hashlib.sha256(_canonical(list(messages)).encode()).hexdigest()


def conversation_key(messages: Sequence[Mapping[str, Any]], run_id: str = "") -> str:
    """Stable across the turns of one conversation (unlike :func:`request_key`)."""
    role = "subagent" if is_subagent(messages) else "orchestrator"
    text = _canonical([run_id, role, first_user_text(messages)])
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Call:
    name: str
    #: JSON text; deliberately invalid for the bad_json fault.
    arguments: str


@dataclass(frozen=True)
class Turn:
    """One assistant reply before it is wrapped into a chat.completion body."""

    content: str
    reasoning: str
    calls: tuple[Call, ...] = field(default=())


def _call(name: str, args: Mapping[str, Any]) -> Call:
    return Call(name, json.dumps(args, ensure_ascii=False))


def _tool_results(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {str(m.get("tool_call_id")): message_text(m.get("content")) for m in _role_messages(messages, "tool")}


_DONE_RE = re.compile(r"Task \d+ done:")
#: How a tool error from the spawn cap begins: the sim assigns those tasks again in its next turn.
_SPAWN_CAP_PREFIX = SPAWN_CAP.split("{", 1)[0]


def _arguments(call: Mapping[str, Any]) -> str:
    return str(wire.function(call).get("arguments", ""))


def _summary(messages: Sequence[Mapping[str, Any]], n: int) -> Turn:
    fanned = [
        c
        for m in _role_messages(messages, "assistant")
        for c in wire.tool_calls(m)
        if wire.function(c).get("name") == ASSIGN_TASKS
    ]
    if fanned:  # one assign_tasks call: its one result holds every answer, in item order
        result = _tool_results(messages).get(str(fanned[-1].get("id")), "")
        n_ok = len(_DONE_RE.findall(result))
        digest = hashlib.sha256(result.encode()).hexdigest()[:12]
        return Turn(
            f"Summary of {n} subagent reports: {n_ok} ok, {n - n_ok} errors. digest={digest}",
            f"All {n} reports are back in one result; summarising them.",
        )
    fan_outs = [
        calls
        for calls in map(wire.tool_calls, _role_messages(messages, "assistant"))
        if any(wire.function(c).get("name") == ASSIGN_TASK for c in calls)
    ]
    # The fan-out is the last turn that assigned Task 1 (an unknown_agent fault turn came earlier);
    # tasks the spawn cap refused were assigned again in later turns: a task's latest result counts.
    start = max((j for j, calls in enumerate(fan_outs) if any("Task 1 of" in _arguments(c) for c in calls)), default=-1)
    results = _tool_results(messages)
    latest = {_arguments(c): results.get(str(c.get("id")), "") for calls in fan_outs[start:] for c in calls}
    # Results are read in call order, not arrival order, so the digest does not depend on
    # which subagent happened to finish first.
    ordered = [latest[_arguments(c)] for c in (fan_outs[start] if fan_outs else [])]
    n_ok = sum(1 for r in ordered if _DONE_RE.search(r))
    digest = hashlib.sha256("".join(ordered).encode()).hexdigest()[:12]
    return Turn(
        content=(f"Summary of {n} subagent reports: {n_ok} ok, {len(ordered) - n_ok} errors. digest={digest}"),
        reasoning=f"All {len(ordered)} reports are back; summarising them.",
    )


def _fault_turn(fault: str, params: SimParams) -> Turn:
    reasoning = f"Injecting fault {fault}."
    if fault == "bad_json":
        return Turn("", reasoning, (Call(ASSIGN_TASK, '{"agent": "worker", "prompt": '),))
    if fault == "unknown_tool":
        return Turn("", reasoning, (_call("teleport", {"destination": "mars"}),))
    if fault == "unknown_agent":
        prompt = f"Task 0 of {params.agents}. {params.subagent_directive()}"
        return Turn("", reasoning, (_call(ASSIGN_TASK, {"agent": "ghost", "prompt": prompt}),))
    return Turn("", reasoning)  # empty


def _orchestrator_turn_index(messages: Sequence[Mapping[str, Any]], fault: str | None) -> int:
    assistants = _role_messages(messages, "assistant")
    turn = len(assistants)
    if (
        fault == "empty"
        and len(_role_messages(messages, "user")) > 1
        and not any(not message_text(a.get("content")) and not wire.tool_calls(a) for a in assistants)
    ):
        # The engine nudged but dropped the empty reply from history; counting the nudge as
        # that turn keeps the sim from answering empty forever.
        turn += 1
    return turn


def scripted_turn(messages: Sequence[Mapping[str, Any]], params: SimParams) -> Turn:
    """The ``call=`` directive: one given tool call, then its result as the final answer."""
    results = [message_text(t.get("content")) for t in _role_messages(messages, "tool")]
    if results:
        # What followed the result (its images, or notes standing for them) is reported too, so
        # a test reads in the answer what reached the model.
        after = [message_text(m.get("content")) for m in messages[len(messages) - 1 :] if m.get("role") == "user"]
        shown = image_parts(messages)
        # Said only when something image-like followed, so plain tool results read as before.
        seen = f" [saw {shown} image(s)]" + "".join(f"\n{text}" for text in after) if shown or after else ""
        return Turn(f"Tool {params.call} returned: {results[-1]}{seen}", "The call is done; reporting its result.")
    args = decode_args(params.args or "") or {}
    return Turn("", f"Calling {params.call} as directed.", (_call(str(params.call), args),))


def orchestrator_turn(messages: Sequence[Mapping[str, Any]], params: SimParams) -> Turn:
    if params.call:
        return scripted_turn(messages, params)
    fault = params.fault
    turn = _orchestrator_turn_index(messages, fault)
    if turn == 0:
        return Turn(
            "",
            "I need workers first: creating one subagent.",
            (_call(CREATE_SUBAGENT, {"name": WORKER_NAME, "system_prompt": WORKER_SYSTEM_PROMPT}),),
        )
    offset = 1 if fault else 0
    if fault and turn == 1:
        return _fault_turn(fault, params)
    n = params.agents
    if turn == 1 + offset and params.fanout:
        template = f"Task {FANOUT_PLACEHOLDER} of {n}. {params.subagent_directive()}"
        args = {"agent": WORKER_NAME, "prompt_template": template, "items": [str(i) for i in range(1, n + 1)]}
        return Turn("", f"The worker exists; fanning out {n} tasks in one call.", (_call(ASSIGN_TASKS, args),))
    if turn == 1 + offset:
        calls = tuple(
            _call(ASSIGN_TASK, {"agent": WORKER_NAME, "prompt": f"Task {i} of {n}. {params.subagent_directive()}"})
            for i in range(1, n + 1)
        )
        return Turn("", f"The worker exists; assigning {n} tasks in parallel.", calls)
    if again := _refused_by_spawn_cap(messages):
        return Turn("", f"{len(again)} tasks were not launched (per-turn cap); assigning them again.", again)
    return _summary(messages, n)


def _refused_by_spawn_cap(messages: Sequence[Mapping[str, Any]]) -> tuple[Call, ...]:
    """The previous turn's assign_task calls that the spawn cap refused, to be made again."""
    assistants = _role_messages(messages, "assistant")
    results = _tool_results(messages)
    return tuple(
        Call(ASSIGN_TASK, _arguments(c))
        for c in (wire.tool_calls(assistants[-1]) if assistants else [])
        if wire.function(c).get("name") == ASSIGN_TASK
        and results.get(str(c.get("id")), "").startswith(_SPAWN_CAP_PREFIX)
    )


_TASK_RE = re.compile(r"Task (\d+) of \d+")


def subagent_turn(messages: Sequence[Mapping[str, Any]], params: SimParams) -> Turn:
    m = _TASK_RE.search(first_user_text(messages))
    i = int(m.group(1)) if m else 0
    results = [message_text(t.get("content")).strip() for t in _role_messages(messages, "tool")]
    k = len(results)
    if k >= params.tools:
        return Turn(f"Task {i} done: {';'.join(results)}", f"{k} tool results in; reporting.")
    if params.subcall:
        call = _call(params.subcall, decode_args(params.args or "") or {})
    elif params.scenario == "files":
        call = _call("python", {"code": _files_code(i, k)})
    elif params.scenario == "repeat":
        call = _repeat_call(i, params.tool)
    elif params.tool == "echo":
        call = _call("echo", {"text": f"task {i} step {k}"})
    else:
        sleep = f"import time; time.sleep({params.tool_latency:g})\n" if params.tool_latency > 0 else ""
        call = _call("python", {"code": f"{sleep}print({i * 1000 + k})"})
    return Turn("", f"Task {i}, step {k}: calling {params.tool}.", (call,))


def _files_code(i: int, k: int) -> str:
    """Step k of task i: append to the file step k-1 wrote. A missing file raises (and the tool
    result is an error), so a workspace that did not follow the run cannot go unnoticed."""
    prev = f"pathlib.Path('notes/{i}_{k - 1}.txt').read_text()" if k else "''"
    return (
        "import pathlib\n"
        "pathlib.Path('notes').mkdir(exist_ok=True)\n"
        f"prev = {prev}\n"
        f"pathlib.Path('notes/{i}_{k}.txt').write_text(prev + 'step {k};')\n"
        f"print('task {i} step {k} read', len(prev))"
    )


def _repeat_call(i: int, tool: str) -> Call:
    """Task i's one call, identical at every step. Its python appends to repeat_<i>.txt, so the
    file tells how many times the call really ran."""
    if tool == "echo":
        return _call("echo", {"text": f"task {i}, the same call again"})
    code = (
        "import pathlib\n"
        f"p = pathlib.Path('repeat_{i}.txt')\n"
        "p.write_text((p.read_text() if p.exists() else '') + 'ran;')\n"
        "print('runs:', p.read_text().count('ran;'))"
    )
    return _call("python", {"code": code})


def decide(messages: Sequence[Mapping[str, Any]], params: SimParams) -> Turn:
    """The next assistant turn of the conversation in ``messages``."""
    return subagent_turn(messages, params) if is_subagent(messages) else orchestrator_turn(messages, params)


def prompt_text(body: Mapping[str, Any]) -> str:
    """The request as the sim "tokenizes" it (4 characters a token): the tools, then the
    messages, serialized canonically, so a conversation's next request extends its last one."""
    tools = body.get("tools")
    return _canonical(list(tools) if isinstance(tools, list) else []) + _canonical(list(body["messages"]))


def prefix_digests(text: str) -> list[bytes]:
    """One digest per whole :data:`CACHE_CHUNK_TOKENS` chunk of ``text``, each over everything
    up to the chunk's end: Kimi-style prefix caching hits chunk k only if chunks 0..k all match."""
    size = CACHE_CHUNK_TOKENS * CHARS_PER_TOKEN
    running = hashlib.blake2b(digest_size=16)
    digests = []
    for end in range(size, len(text) + 1, size):
        running.update(text[end - size : end].encode())
        digests.append(running.copy().digest())
    return digests


def completion_body(
    turn: Turn,
    messages: Sequence[Mapping[str, Any]],
    model: str,
    thinking: bool,
    *,
    prompt_tokens: int | None = None,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """``turn`` as an OpenAI ``chat.completion`` body, with Kimi-style tool-call ids."""
    # Kimi numbers tool calls across the whole conversation: functions.<name>:<idx>.
    base = sum(len(wire.tool_calls(m)) for m in _role_messages(messages, "assistant"))
    tool_calls = [
        {
            "id": f"functions.{c.name}:{base + j}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for j, c in enumerate(turn.calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if thinking:
        message["reasoning_content"] = turn.reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    reply_chars = (
        len(turn.content)
        + (len(turn.reasoning) if thinking else 0)
        + sum(len(c.name) + len(c.arguments) for c in turn.calls)
    )
    if prompt_tokens is None:
        prompt_tokens = len(_canonical(list(messages))) // CHARS_PER_TOKEN
    completion_tokens = max(1, reply_chars // CHARS_PER_TOKEN)
    reasoning_tokens = len(turn.reasoning) // CHARS_PER_TOKEN if thinking else 0
    return {
        "id": f"chatcmpl-sim-{request_key(messages)[:24]}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            # Moonshot's field, and OpenAI's / vLLM's: clients read one or the other.
            "cached_tokens": cached_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": min(reasoning_tokens, completion_tokens)},
        },
    }


def reply(body: Mapping[str, Any], defaults: SimParams, *, cached_tokens: int = 0) -> dict[str, Any]:
    """The whole pure path: a valid request body and server defaults → completion body.
    ``cached_tokens``: how much of the prompt the server's prefix cache held."""
    messages: list[Mapping[str, Any]] = list(body["messages"])
    params = resolve_params(messages, defaults)
    model = body.get("model")
    return completion_body(
        decide(messages, params),
        messages,
        model if isinstance(model, str) and model else DEFAULT_MODEL,
        thinking=params.thinking and wire.thinking_requested(body),
        prompt_tokens=len(prompt_text(body)) // CHARS_PER_TOKEN,
        cached_tokens=cached_tokens,
    )
