"""Message rows ↔ OpenAI chat messages. One row per message; a request is rebuilt from rows."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from swarm.llm.types import LLMResponse
from swarm.store.types import Attachment

#: Text attachments larger than this are cut when inlined into the prompt (the file itself is
#: still in the workspace for the python tool).
MAX_INLINE_TEXT = 100_000


def to_openai(row: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": row.role, "content": row.content if row.content is not None else ""}
    if row.role == "assistant":
        if row.tool_calls:
            msg["tool_calls"] = row.tool_calls
        if row.reasoning_content:
            # Kimi rejects (HTTP 400) an assistant tool-call message without its reasoning.
            msg["reasoning_content"] = row.reasoning_content
    if row.role == "tool":
        msg["tool_call_id"] = row.tool_call_id
    return msg


def tool_calls_json(response: LLMResponse) -> list[dict[str, Any]]:
    return [{"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
            for tc in response.tool_calls]


def user_content(task: str, attachments: Sequence[Attachment]) -> Any:
    """The first user message: plain text, or content parts when files are attached. Images go to
    the model as image parts (Kimi K2.5 is natively multimodal); text files as text."""
    if not attachments:
        return task
    parts: list[dict[str, Any]] = [{"type": "text", "text": task}]
    for att in attachments:
        if att.mime.startswith("image/"):
            url = f"data:{att.mime};base64,{base64.b64encode(att.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            text = att.data.decode("utf-8", errors="replace")
            if len(text) > MAX_INLINE_TEXT:
                text = text[:MAX_INLINE_TEXT] + f"\n[... truncated; full file is {att.name} in the workspace]"
            parts.append({"type": "text", "text": f"Attached file {att.name}:\n{text}"})
    return parts
