"""Message rows ↔ OpenAI chat messages. One row per message; a request is rebuilt from rows."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from swarm.domain import images, sanitize
from swarm.domain.llm import LLMResponse
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


def rebuild(rows: Sequence[Any], vision: bool = True) -> list[dict[str, Any]]:
    """An agent's message rows (in order) as the chat messages of its next model call, the images
    of each turn's tool results in a user message after them (``domain.images.with_images``)."""
    return images.with_images(((to_openai(r), getattr(r, "images", None)) for r in rows), vision)


def tool_calls_json(response: LLMResponse) -> list[dict[str, Any]]:
    return [
        {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
        for tc in response.tool_calls
    ]


def user_content(task: str, attachments: Sequence[Attachment]) -> Any:
    """The first user message: plain text, or content parts when files are attached. Images go to
    the model as image parts (Kimi K2.5 is natively multimodal); text files as text; any other
    file (a PDF, an archive: not UTF-8 text) is only named: its bytes are in the workspace, and
    inlined they would be noise to the model (and NULs PostgreSQL refuses)."""
    task = sanitize.text(task)
    if not attachments:
        return task
    parts: list[dict[str, Any]] = [{"type": "text", "text": task}]
    for att in attachments:
        name = sanitize.text(att.name)
        if att.mime.startswith("image/"):
            url = f"data:{sanitize.text(att.mime)};base64,{base64.b64encode(att.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
            continue
        text = _utf8_text(att.data)
        if text is None:
            parts.append({"type": "text", "text": binary_note(name, att.mime, len(att.data))})
            continue
        if len(text) > MAX_INLINE_TEXT:
            text = text[:MAX_INLINE_TEXT] + f"\n[... truncated; full file is {name} in the workspace]"
        parts.append({"type": "text", "text": f"Attached file {name}:\n{text}"})
    return parts


def binary_note(name: str, mime: str, size: int) -> str:
    return (
        f"Attached file {name} ({sanitize.text(mime)}, {size} bytes) is binary, so it is not shown here; "
        f"it is in the workspace as {name}, where the python tool can read it."
    )


def _utf8_text(data: bytes) -> str | None:
    """The file as text, or None if it is binary: not UTF-8, or holding NUL bytes."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
