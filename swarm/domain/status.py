"""The status machines of runs, agents and steps, and the guard that enforces them."""

from __future__ import annotations

from enum import StrEnum

from swarm.exceptions import InvalidTransition


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AgentStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    READY = "ready"          # may be claimed by any worker
    RUNNING = "running"      # claimed under a lease and a fence
    WAITING = "waiting"      # assign_task: waits for its subagent, holds no worker
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    LLM = "llm"
    TOOL = "tool"


RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
AGENT_TERMINAL = frozenset({AgentStatus.SUCCEEDED, AgentStatus.FAILED, AgentStatus.CANCELLED})
STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED})
STEP_OPEN = frozenset({StepStatus.READY, StepStatus.RUNNING, StepStatus.WAITING})

_RUN_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}),
    # Resume: a failed or cancelled run goes back to running and reuses what it committed.
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING}),
    RunStatus.SUCCEEDED: frozenset(),
}

_STEP_MOVES: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.READY: frozenset({StepStatus.RUNNING, StepStatus.CANCELLED, StepStatus.FAILED}),
    StepStatus.RUNNING: frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.WAITING,
                                   StepStatus.READY, StepStatus.CANCELLED, StepStatus.RUNNING}),
    StepStatus.WAITING: frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED}),
    StepStatus.SUCCEEDED: frozenset(),
    # Resume re-opens failed and cancelled steps.
    StepStatus.FAILED: frozenset({StepStatus.READY}),
    StepStatus.CANCELLED: frozenset({StepStatus.READY}),
}


def check_run_move(current: RunStatus, target: RunStatus) -> None:
    """Raise :class:`InvalidTransition` unless a run may go from *current* to *target*."""
    if target not in _RUN_MOVES[current]:
        raise InvalidTransition(f"a {current} run cannot become {target}")


def check_step_move(current: StepStatus, target: StepStatus) -> None:
    """Raise :class:`InvalidTransition` unless a step may go from *current* to *target*."""
    if target not in _STEP_MOVES[current]:
        raise InvalidTransition(f"a {current} step cannot become {target}")

