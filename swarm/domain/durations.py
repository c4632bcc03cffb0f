"""Ages as users write them: ``30d``, ``12h``, ``90m``, ``3600s`` (or plain seconds)."""

from __future__ import annotations

import re

from swarm.constants import AGE_PATTERN
from swarm.exceptions import InputError

#: Seconds in a day.
DAY = 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}
_AGE = re.compile(AGE_PATTERN)


def parse_age(text: str) -> float:
    """Seconds in ``text``; InputError for anything else, or for zero."""
    m = _AGE.fullmatch(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"{text!r} is not an age: write a positive number with a unit, e.g. 30d, 12h, 90m or 3600s")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]
