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
    "agent_context": "read", "artifacts": "read",
    "commit_llm": "commit", "commit_tool": "commit", "create_subagent": "commit",
    "launch_subagent": "commit", "fail_step": "commit",
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


def _timed(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            phases = getattr(_local, "phases", None)
            if phases is not None:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t0
                cpu = "cpu_" + phase
                phases[cpu] = phases.get(cpu, 0.0) + time.thread_time() - c0
    return wrapper


class StepTimer:
    """Brackets one task: ``with StepTimer(...) as t: ...; t.mark_published()``."""

    def __init__(self, **labels: Any) -> None:
        self.labels = labels
        self.on = enabled()
        self._t0 = self._t_exec = self._c0 = self._c_exec = 0.0

    def __enter__(self) -> StepTimer:
        if self.on:
            _local.phases = {}
            self._t0, self._c0 = time.perf_counter(), time.thread_time()
        return self

    def executed(self) -> None:
        if self.on:
            self._t_exec, self._c_exec = time.perf_counter(), time.thread_time()

    def __exit__(self, *exc: object) -> None:
        if not self.on:
            return
        end, c_end = time.perf_counter(), time.thread_time()
        phases: dict[str, float] = getattr(_local, "phases", None) or {}
        _local.phases = None
        executed = self._t_exec or end
        total = executed - self._t0
        wall_phases = {k: v for k, v in phases.items() if not k.startswith("cpu_")}
        work = max(0.0, total - sum(wall_phases.values()))
        c_exec = self._c_exec or c_end
        cpu = {k: v for k, v in phases.items() if k.startswith("cpu_")}
        cpu_phases = {p: sum(v for k, v in cpu.items() if k == "cpu_" + p) for p in ("claim", "read", "commit")}
        line = {**self.labels, "pid": os.getpid(), "t": time.time(), "claim": phases.get("claim", 0.0),
                "read": phases.get("read", 0.0), "commit": phases.get("commit", 0.0), "work": work,
                "publish": end - executed if self._t_exec else 0.0, "total": end - self._t0,
                "claimed": "commit" in phases or "read" in phases,
                "cpu": {**cpu_phases, "work": max(0.0, c_exec - self._c0 - sum(cpu_phases.values())),
                        "publish": c_end - c_exec if self._t_exec else 0.0, "total": c_end - self._c0}}
        path = os.environ.get(ENV, "")
        with _write_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
