"""The wire format of chat requests as the simulated model reads them, and the checks the real Kimi
API makes before answering (a request it would refuse gets the same 400 here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def thinking_requested(body: Mapping[str, Any]) -> bool:
    """Whether the request leaves Kimi's thinking on (Moonshot's ``thinking`` field or the
    vLLM/SGLang ``chat_template_kwargs``); thinking is Kimi K2.5's default."""
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") == "disabled":
        return False
    kwargs = body.get("chat_template_kwargs")
    return not (isinstance(kwargs, Mapping) and kwargs.get("thinking") is False)


def tool_calls(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    calls = message.get("tool_calls")
    return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []


def function(call: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = call.get("function")
    return fn if isinstance(fn, Mapping) else {}


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(p, Mapping) and p.get("type") == "image_url" for p in content)


def validate_request(body: Any) -> str | None:
    """Why the real Kimi API would reject ``body`` with a 400, or None if it would accept it."""
    if not isinstance(body, Mapping):
        return "request body must be a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty array"
    if body.get("stream"):
        return "stream=true is not supported by the simulated model"
    thinking = thinking_requested(body)
    temperature = body.get("temperature")
    if temperature is not None:
        wanted = 1.0 if thinking else 0.6
        if not isinstance(temperature, int | float) or abs(float(temperature) - wanted) > 1e-9:
            mode = "enabled" if thinking else "disabled"
            return f"invalid temperature: only {wanted} is allowed when thinking is {mode}"
    return _validate_messages(messages, thinking)


def _validate_messages(messages: list[Any], thinking: bool) -> str | None:
    answered: set[str] = set()
    pending: list[str] = []  # ids of the latest tool-call turn still waiting for results
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            return f"message at index {i} must be an object"
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            return f"message at index {i} has invalid role {role!r}"
        if role != "user" and _has_image(m.get("content")):
            return f"image_url is only supported in user messages (message at index {i} has role {role!r})"
        if role != "tool" and pending:
            return (
                f"assistant message with tool_calls must be followed by tool messages "
                f"for each tool_call_id; missing {pending[0]!r} before index {i}"
            )
        if role == "assistant":
            calls = tool_calls(m)
            if calls and thinking and not m.get("reasoning_content"):
                return (
                    f"thinking is enabled but reasoning_content is missing in assistant tool call message at index {i}"
                )
            pending = [str(c.get("id", "")) for c in calls]
            answered.update(pending)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in answered:
                return f"tool_call_id {call_id!r} at index {i} is not found"
            if call_id in pending:
                pending.remove(call_id)
    return None
