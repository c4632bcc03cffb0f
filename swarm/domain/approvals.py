"""Which tool calls wait for a human decision, and what the model is told when one is refused.

A deployment (``SWARM_APPROVE_TOOLS``) and a run (``swarm run --approve``, ``approve_tools`` in
the REST body) name tools, or fnmatch patterns of tools (``mcp__github__*``), that need approval.
A run's list *extends* the deployment's, never replaces it: whoever submits a run cannot switch
off an approval the operator asked for. The union is stored on the run at submission, so every
worker decides alike whatever its own settings say.

Anything ambiguous fails closed: an unreadable pattern list is refused where it enters (CLI,
API, settings), an expired request is a rejection, and a decision can only be taken once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from fnmatch import fnmatchcase

from swarm.constants import TOOL_PATTERN
from swarm.domain.durations import parse_age
from swarm.exceptions import InputError, NotFound

_PATTERN = re.compile(TOOL_PATTERN)
#: How much of a call's arguments an approval request shows (the step keeps all of them).
PREVIEW_CHARS = 2000
#: The reason of a request nobody decided in time (SWARM_APPROVAL_TIMEOUT).
EXPIRED = "approval expired"


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


def parse_patterns(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Tool names or patterns from ``"python, web_fetch"`` or a list of them, without repeats.
    InputError for anything that is not a name or a pattern (it would silently match nothing)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if not _PATTERN.fullmatch(item):
            raise InputError(
                f"{item[:80]!r} is not a tool name or pattern: write names like python or web_fetch, or "
                "patterns like mcp__github__*, separated by commas"
            )
        if item not in out:
            out.append(item)
    return tuple(out)


def merge(deployment: Sequence[str], run: Sequence[str]) -> tuple[str, ...]:
    """The patterns a run is held to: the deployment's, and the run's own on top."""
    return tuple(dict.fromkeys([*deployment, *run]))


def needs_approval(tool: str, patterns: Sequence[str] | None) -> bool:
    """Whether a call of ``tool`` waits for a human decision before it runs."""
    return any(fnmatchcase(tool, p) for p in patterns or ())


def parse_timeout(value: str | float | None) -> float | None:
    """Seconds a request may wait (``1800``, ``30m``, ``2h``); None: no expiry."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float):
        if value <= 0:
            raise InputError(f"an approval timeout must be positive, not {value}")
        return float(value)
    return parse_age(value)


def decision_of(text: str) -> Decision:
    """``approve`` / ``reject`` (as the REST body spells them) or the stored names."""
    word = text.strip().lower()
    if word in ("approve", "approved"):
        return Decision.APPROVED
    if word in ("reject", "rejected"):
        return Decision.REJECTED
    raise InputError(f"decision must be 'approve' or 'reject', not {text[:40]!r}")


def check_reason(decision: Decision, note: str | None) -> str | None:
    """A rejection must say why (the model reads it); an approval's note is optional."""
    note = (note or "").strip() or None
    if decision == Decision.REJECTED and note is None:
        raise InputError("a rejection needs a reason: the model is told it (e.g. --reason 'no network access')")
    return note


def preview(arguments: str | None) -> str:
    text = arguments or ""
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def rejection_text(tool: str, reason: str) -> str:
    """The tool error the model gets for a call a human refused (or nobody approved in time)."""
    return (
        f"Error: this call to {tool} was not run: a human reviewer rejected it ({reason}). "
        "Do not retry it unchanged; continue without it or try another approach."
    )


def step_prefix(text: str) -> str:
    """A step id typed whole or short, to look up (InputError if it is not hex)."""
    cleaned = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,32}", cleaned):
        raise InputError(f"{text!r} is not a step id: step ids are 32 hex characters (any unique prefix works)")
    return cleaned


def pick_step(text: str, matches: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The one (run id, step id) of an approval request a step id prefix names."""
    if not matches:
        raise NotFound(f"no approval request for step {text!r}; `swarm approvals` lists them")
    if len(matches) > 1:
        ids = ", ".join(step for _, step in matches)
        raise InputError(f"{text!r} names more than one step ({ids}, ...): give more of the id")
    return matches[0]
