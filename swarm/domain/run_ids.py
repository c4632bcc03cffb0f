"""Run ids as users type them: whole (32 hex characters) or any unique prefix of one."""

from __future__ import annotations

import re
from collections.abc import Sequence

from swarm.exceptions import InputError, NotFound

RUN_ID_LENGTH = 32
_HEX = re.compile(r"[0-9a-f]{1,32}")


def is_whole(text: str) -> bool:
    return len(text) == RUN_ID_LENGTH and _HEX.fullmatch(text) is not None


def prefix(text: str) -> str:
    """``text`` as a prefix to look up, or InputError saying what a run id looks like."""
    cleaned = text.strip().lower()
    if not _HEX.fullmatch(cleaned):
        raise InputError(f"{text!r} is not a run id: run ids are 32 hex characters, and any unique prefix of one works")
    return cleaned


def not_found(text: str) -> NotFound:
    """The one error for a run that does not exist (or belongs to another tenant)."""
    return NotFound(f"no run {text!r}; `swarm ls` lists runs")


def pick(text: str, matches: Sequence[str]) -> str:
    """The one run id a prefix names, given the ids that start with it (two are enough to know)."""
    if not matches:
        raise not_found(text)
    if len(matches) > 1:
        raise InputError(f"{text!r} names more than one run ({', '.join(matches)}, ...): give more of the id")
    return matches[0]
