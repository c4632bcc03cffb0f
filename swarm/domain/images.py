"""Images tool calls hand the model: what is kept of each (a stored record, :class:`Picture`), how
many, and how they reach the agent's next model call.

A tool result's images are stored on its tool message row as JSON records, downscaled bytes
included, so the conversation rebuilt from rows before every model call is byte-identical each time
(a prefix cache keeps hitting) and does not depend on run files that may change later.

OpenAI's Chat Completions API and Kimi take image parts in ``user`` messages only (a ``tool``
message's content is text), and tool messages must follow their assistant message without a
break. So :func:`with_images` puts the images of a turn's tool results in one ``user`` message
right after the turn's last tool message, naming each image. With vision off
(``SWARM_LLM_VISION=false``, a text-only model) that message holds a one-line note per image, and
images attached to the task are notes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Longest side of an image as the model gets it (a larger one is scaled down).
MAX_SIDE = 1024
#: Bytes of one image as the model gets it, once encoded (re-encoded smaller past this).
MAX_BYTES = 1024 * 1024
#: Images one tool call hands the model; the others are named in a note.
MAX_PER_CALL = 4
#: File suffixes of the images a tool call writes that go to the model.
SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Picture:
    """One image for the model: its name (a workspace path, or ``tool image N``), and either its
    encoded bytes (base64) with its size, or why it was left out."""

    name: str
    mime: str = ""
    width: int = 0
    height: int = 0
    data: str = ""  #: base64 of the downscaled image; empty if left out
    omitted: str = ""  #: why the model does not get it (too many, unreadable, ...)

    def record(self) -> dict[str, Any]:
        """The JSON kept on the tool message row."""
        if self.omitted:
            return {"name": self.name, "omitted": self.omitted}
        return {"name": self.name, "mime": self.mime, "width": self.width, "height": self.height, "data": self.data}

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Picture:
        return cls(
            str(r.get("name", "")),
            str(r.get("mime", "")),
            int(r.get("width", 0)),
            int(r.get("height", 0)),
            str(r.get("data", "")),
            str(r.get("omitted", "")),
        )


def is_image_path(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def parts(pictures: Sequence[Picture], vision: bool) -> list[dict[str, Any]]:
    """The content parts of the message that shows ``pictures`` to the model."""
    out: list[dict[str, Any]] = []
    for p in pictures:
        if p.omitted:
            out.append({"type": "text", "text": f"[image {p.name} omitted: {p.omitted}]"})
        elif not vision:
            out.append(
                {"type": "text", "text": f"[image {p.name} {p.width}x{p.height} omitted: this model cannot see images]"}
            )
        else:
            out.append({"type": "text", "text": f"[image {p.name} {p.width}x{p.height}]"})
            out.append({"type": "image_url", "image_url": {"url": f"data:{p.mime};base64,{p.data}"}})
    return out


def with_images(messages: Iterable[tuple[dict[str, Any], Any]], vision: bool) -> list[dict[str, Any]]:
    """The chat messages, each given with its stored image records (or None), with a ``user``
    message showing the images of each run of consecutive tool messages right after it."""
    out: list[dict[str, Any]] = []
    waiting: list[Picture] = []
    for msg, records in messages:
        if msg.get("role") != "tool" and waiting:
            out.append(_images_message(waiting, vision))
            waiting = []
        out.append(msg if vision else _blind(msg))
        if msg.get("role") == "tool" and records:
            waiting.extend(Picture.from_record(r) for r in records)
    if waiting:
        out.append(_images_message(waiting, vision))
    return out


#: What a text-only model reads instead of an image attached to the task.
ATTACHED_NOTE = "[an attached image omitted: this model cannot see images; the file is in the workspace]"


def _blind(msg: dict[str, Any]) -> dict[str, Any]:
    """``msg`` with each image part (an image attached to the task) replaced by a note."""
    content = msg.get("content")
    if not isinstance(content, list) or not any(p.get("type") == "image_url" for p in content):
        return msg
    notes = [{"type": "text", "text": ATTACHED_NOTE} if p.get("type") == "image_url" else p for p in content]
    return {**msg, "content": notes}


def _images_message(pictures: Sequence[Picture], vision: bool) -> dict[str, Any]:
    n = len(pictures)
    head = f"The tool calls above produced {n} image{'s' if n != 1 else ''}:"
    return {"role": "user", "content": [{"type": "text", "text": head}, *parts(pictures, vision)]}
