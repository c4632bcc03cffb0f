"""Optional per-step timing for benchmarks: where a step's time goes inside a worker.

Off unless ``SWARM_STEP_TIMINGS`` names a file; then every step appends one JSON line with the
seconds spent claiming, reading its context, committing, publishing what it made ready, and the
rest ("work": the model call or the tool). When off, the store is returned untouched: zero cost.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from swarm.store.store import StateStore

ENV = "SWARM_STEP_TIMINGS"
_PHASES = {
    "claim": "claim",
    "agent_context": "read",
    "artifacts": "read",
    "commit_llm": "commit",
    "commit_tool": "commit",
    "create_subagent": "commit",
    "launch_subagent": "commit",
    "fail_step": "commit",
}
_local = threading.local()
_write_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def instrument(store: StateStore) -> StateStore:
    if not enabled():
        return store
    for name, phase in _PHASES.items():
        setattr(store, name, _timed(getattr(store, name), phase))
    return store


def _now() -> tuple[float, float]:
    """(wall, CPU of this thread): each phase is measured on both clocks."""
    return time.perf_counter(), time.thread_time()


def _timed(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = _now()
        try:
            return fn(*args, **kwargs)
        finally:
            phases = getattr(_local, "phases", None)
            if phases is not None:
                spent = phases.setdefault(phase, [0.0, 0.0])
                for clock, (now, then) in enumerate(zip(_now(), start, strict=True)):
                    spent[clock] += now - then

    return wrapper


class StepTimer:
    """Brackets one task: ``with StepTimer(...) as t: ...; t.executed(); publish``."""

    def __init__(self, **labels: Any) -> None:
        self.labels = labels
        self.on = enabled()
        self._start = self._executed = (0.0, 0.0)

    def __enter__(self) -> StepTimer:
        if self.on:
            _local.phases = {}
            self._start = _now()
        return self

    def executed(self) -> None:
        if self.on:
            self._executed = _now()

    def _breakdown(self, phases: dict[str, list[float]], clock: int, end: float) -> dict[str, float]:
        start = self._start[clock]
        executed = self._executed[clock] or end
        out = {p: phases.get(p, [0.0, 0.0])[clock] for p in ("claim", "read", "commit")}
        out["work"] = max(0.0, executed - start - sum(out.values()))
        out["publish"] = end - executed
        out["total"] = end - start
        return out

    def __exit__(self, *exc: object) -> None:
        if not self.on:
            return
        end = _now()
        phases: dict[str, list[float]] = getattr(_local, "phases", None) or {}
        _local.phases = None
        line = {
            **self.labels,
            "pid": os.getpid(),
            "t": time.time(),
            **self._breakdown(phases, 0, end[0]),
            "claimed": "commit" in phases or "read" in phases,
            "cpu": self._breakdown(phases, 1, end[1]),
        }
        path = os.environ.get(ENV, "")
        with _write_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
