"""Make what models and tools hand back storable, once, where it enters swarm.

The database refuses some values outright: PostgreSQL text and JSONB cannot hold NUL, no UTF-8
column can hold a lone surrogate (JSON can carry one: ``"\\ud800"``), ``VARCHAR(128)`` refuses a
129-character tool-call id and ``INTEGER`` a token count of 10**30. Such a value used to fail the
step's commit, which then ran again (and was paid for again) until the run failed with a vague
reason. Here every such value is made storable instead: pure functions, no I/O.

Applied by the step executor to every model response (:func:`response`) and every tool result
(:func:`text`), and by the planner to tool-call arguments (:func:`load_arguments`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace
from typing import Any

from swarm.domain.llm import LLMResponse, ToolCall

#: What a character the database cannot store becomes in text.
REPLACEMENT = "\ufffd"
#: ``steps.tool_call_id`` / ``messages.tool_call_id`` are VARCHAR(128).
MAX_ID_CHARS = 128
#: ``steps.tool_name`` is VARCHAR(128).
MAX_NAME_CHARS = 128
#: ``steps.tokens_in`` / ``tokens_out`` are INTEGER (the run and agent totals are BIGINT).
MAX_TOKENS = 2**31 - 1
#: Tool-call arguments larger than this (characters of JSON) are refused as a tool error.
MAX_ARGUMENT_CHARS = 1_000_000
#: Tool-call arguments nested deeper than this are refused as a tool error.
MAX_ARGUMENT_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value: str, replacement: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(replacement, value)
    return value


def text(value: str) -> str:
    """Text the database can store: NUL and lone surrogates become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    return _no_surrogates(value, REPLACEMENT)


def optional_text(value: str | None) -> str | None:
    return None if value is None else text(value)


def json_text(value: str) -> str:
    """Raw JSON text (tool-call arguments) the database can store. A NUL becomes the escape
    ``\\u0000``: inside a JSON string (the only place valid JSON can have one) that keeps its
    meaning, and the tool still receives the NUL the model sent."""
    if "\x00" in value:
        value = value.replace("\x00", "\\u0000")
    return _no_surrogates(value, REPLACEMENT)


def json_value(value: Any) -> Any:
    """A JSON-able value (e.g. message content parts) with every string made storable."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {text(str(k)): json_value(v) for k, v in value.items()}
    return value


def call_id(value: str, index: int) -> str:
    """A tool-call id that fits its column. An over-long or unstorable id is replaced by one
    derived from its hash: stable, so the call and its result (both built from the sanitised
    response) keep their pairing, and distinct ids stay distinct. An empty id gets the
    planner's positional one."""
    if not value:
        return f"call_{index}"
    if len(value) <= MAX_ID_CHARS and text(value) == value:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"call_{digest}"


def name(value: str) -> str:
    """A tool name that fits its column. Cut names end in "…", so they never match a real tool:
    the model hears that the (over-long) tool does not exist."""
    value = text(value)
    if len(value) <= MAX_NAME_CHARS:
        return value
    return value[: MAX_NAME_CHARS - 1] + "…"


def token_count(value: Any) -> int:
    """A usage count as the columns take it: an int in 0..MAX_TOKENS; junk counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip()) if len(value) < 32 else 0
        except ValueError:
            return 0
    if not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_TOKENS)


def response(resp: LLMResponse) -> LLMResponse:
    """The model's turn with every value storable (see the module docstring)."""
    calls = tuple(
        ToolCall(call_id(tc.id, i), name(tc.name), json_text(tc.arguments)) for i, tc in enumerate(resp.tool_calls)
    )
    clean = replace(
        resp,
        content=optional_text(resp.content),
        reasoning_content=optional_text(resp.reasoning_content),
        tool_calls=calls,
        tokens_in=token_count(resp.tokens_in),
        tokens_out=token_count(resp.tokens_out),
        tokens_cached=min(token_count(resp.tokens_cached), token_count(resp.tokens_in)),
        tokens_reasoning=token_count(resp.tokens_reasoning),
    )
    return resp if clean == resp else clean


def load_arguments(raw: str) -> tuple[Any, str | None]:
    """Parse tool-call arguments within the size and depth limits: ``(value, None)``, or
    ``(None, problem)`` where problem is ``"size"``, ``"depth"`` or a JSON error message."""
    if len(raw) > MAX_ARGUMENT_CHARS:
        return None, "size"
    try:
        value = json.loads(raw)
    except RecursionError:  # deeper than the parser's own stack allows
        return None, "depth"
    except json.JSONDecodeError as exc:
        return None, exc.msg
    # Only text with enough brackets can be too deep: skip the walk for everything else.
    if raw.count("[") + raw.count("{") > MAX_ARGUMENT_DEPTH and depth(value) > MAX_ARGUMENT_DEPTH:
        return None, "depth"
    return value, None


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0). Iterative."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
