"""What a user may ask of a run: one table of bounds, one message per mistake, shared by the CLI's
options (``cli/runs.py``) and the API's request models (``api/schemas.py``), so both refuse the
same values with the same words. The bounds are the database's columns and what makes sense
(a subagent budget of -1, a wall limit of 0 s); the server's defaults (SWARM_MAX_*) are checked
at start by ``config.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from swarm.domain.budget import MAX_TOKENS, MAX_USD
from swarm.exceptions import InputError

N = TypeVar("N", int, float)

#: Characters of a task (the API's request limit; a task is the run's first user message).
MAX_TASK_CHARS = 200_000


@dataclass(frozen=True)
class Bound:
    """``low <= value <= high`` (``low < value`` when ``low_open``) of the limit the API calls
    ``name`` and the CLI ``flag``."""

    name: str
    flag: str
    low: float
    high: float
    integer: bool = True
    low_open: bool = False

    def message(self, value: object) -> str:
        kind = "a whole number" if self.integer else "a number"
        low = f"greater than {_num(self.low)}" if self.low_open else f"at least {_num(self.low)}"
        return f"{self.name} ({self.flag}) must be {kind} {low} and at most {_num(self.high)}, got {_num(value)}"

    def check(self, value: N | None) -> N | None:
        """``value`` if within bounds (None: not given); InputError with :meth:`message` if not."""
        if value is None:
            return None
        inside = (self.low < value if self.low_open else self.low <= value) and value <= self.high
        if not inside:
            raise InputError(self.message(value))
        return value

    def json_schema(self) -> dict[str, Any]:
        """The bound as JSON Schema keywords (the API's OpenAPI document)."""
        low = {"exclusiveMinimum": self.low} if self.low_open else {"minimum": self.low}
        return {**low, "maximum": self.high}


def _num(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


#: Every per-run limit a user can set, by its API name.
BOUNDS: dict[str, Bound] = {
    b.name: b
    for b in (
        Bound("max_subagents", "--max-subagents", 0, 100_000),
        Bound("max_tool_calls", "--max-tool-calls", 0, 1_000_000),
        Bound("max_steps_per_agent", "--max-steps", 1, 100_000),
        Bound("max_wall_seconds", "--max-wall", 0, 30 * 86400, integer=False, low_open=True),
        Bound("max_depth", "--max-depth", 1, 16),
        Bound("max_spawns_per_turn", "--max-spawns-per-turn", 1, 100_000),
        Bound("max_usd", "--max-usd", 0, MAX_USD, integer=False, low_open=True),
        Bound("max_tokens", "--max-tokens", 0, MAX_TOKENS, low_open=True),
    )
}


def check_task(task: str) -> str:
    """A task as given: non-empty, at most :data:`MAX_TASK_CHARS` characters."""
    if not task:
        raise InputError("task must not be empty: say what the swarm should do")
    if len(task) > MAX_TASK_CHARS:
        raise InputError(f"task must be at most {MAX_TASK_CHARS} characters, got {len(task)}")
    return task


def check_limits(**values: float | None) -> None:
    """Every given limit within its bound (InputError naming the first one that is not)."""
    for name, value in values.items():
        BOUNDS[name].check(value)
