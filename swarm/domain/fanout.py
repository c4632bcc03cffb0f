"""Template fan-out (``assign_tasks``): pure decisions over one call's arguments and its answers.

``assign_tasks(agent, prompt_template, items)`` launches one subagent per item, each with the
template's ``{{item}}`` replaced by the item. The call is refused (a tool error for the model) when
it has no items or more than :data:`~swarm.constants.MAX_FANOUT_ITEMS`, an item that is not text,
a template without the placeholder, or two items that give the same prompt. Its result is every
subagent's answer in item order, each labelled with its item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swarm.constants import FANOUT_PLACEHOLDER, MAX_FANOUT_ITEMS
from swarm.domain import prompts


def item_text(value: Any) -> str | None:
    """An item as the prompt shows it: a string as is, a number written out; None for anything else
    (booleans, lists, objects are not items)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def expand(template: str, items: Any) -> tuple[str, ...] | str:
    """The prompts of a fan-out, one per item, or the error message that tells the model what to fix."""
    if not isinstance(items, list) or not items:
        return prompts.FANOUT_NO_ITEMS
    if len(items) > MAX_FANOUT_ITEMS:
        return prompts.FANOUT_TOO_MANY.format(limit=MAX_FANOUT_ITEMS, count=len(items))
    if FANOUT_PLACEHOLDER not in template:
        return prompts.FANOUT_NO_PLACEHOLDER.format(placeholder=FANOUT_PLACEHOLDER)
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        text = item_text(raw)
        if text is None:
            return prompts.FANOUT_BAD_ITEM.format(index=i + 1, kind=type(raw).__name__)
        prompt = template.replace(FANOUT_PLACEHOLDER, text)
        if prompt in seen:
            return prompts.FANOUT_DUPLICATES.format(first=seen[prompt] + 1, second=i + 1)
        seen[prompt] = i
        out.append(prompt)
    return tuple(out)


def spawns(items: Any) -> int:
    """How many subagents a valid call's ``items`` launch."""
    return len(items) if isinstance(items, list) else 0


@dataclass(frozen=True)
class Answer:
    """One subagent's outcome: its final message, or why it failed."""

    ok: bool
    text: str


def combine(items: Sequence[str], answers: Sequence[Answer]) -> str:
    """The fan-out call's result: a header, then each answer under its item, in item order."""
    n, ok = len(answers), sum(a.ok for a in answers)
    parts = [prompts.FANOUT_HEADER.format(count=n, ok=ok, failed=n - ok)]
    for i, answer in enumerate(answers):
        item = items[i] if i < len(items) else "?"
        label = prompts.FANOUT_ITEM.format(
            index=i + 1, count=n, item=item[:200], outcome="answer" if answer.ok else "failed"
        )
        parts.append(f"{label}\n{answer.text}")
    return "\n\n".join(parts)
