"""The status machines of runs, agents and steps, declared once as named transitions.

Each :class:`Transition` names one move (``STEP_CLAIM``: a ready step becomes running). The store
executes it as ``UPDATE … WHERE status IN (sources)`` (``swarm.store.statements.guard``), so the SQL
cannot allow what this module does not; the tables of allowed moves (:data:`RUN_MOVES`,
:data:`AGENT_MOVES`, :data:`STEP_MOVES`) are derived from the transitions, never written by hand.
A move the machine refuses raises :class:`~swarm.exceptions.InvalidTransition`, saying what was
attempted, from which status, and what the move allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from swarm.exceptions import InvalidTransition


class RunStatus(StrEnum):
    RUNNING = "running"  #: agents are working (a run starts here: nothing queues before it)
    SUCCEEDED = "succeeded"  #: the orchestrator gave its final answer
    FAILED = "failed"  #: an agent of the run failed for good, or the run ran out of time
    CANCELLED = "cancelled"  #: cancelled by a user; may be resumed


class AgentStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    READY = "ready"  # may be claimed by any worker
    RUNNING = "running"  # claimed under a lease and a fence
    WAITING = "waiting"  # assign_task: waits for its subagent, holds no worker
    AWAITING_APPROVAL = "awaiting_approval"  # a tool call waits for a human decision, holds no worker
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    LLM = "llm"
    TOOL = "tool"


S = TypeVar("S", RunStatus, AgentStatus, StepStatus)


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One named move: a row in one of ``sources`` becomes ``target``."""

    #: What the move is called in errors and logs ("cancel", "claim", …).
    name: str
    sources: frozenset[S]
    target: S

    @property
    def subject(self) -> str:
        """What moves: "run", "agent" or "step"."""
        return {RunStatus: "run", AgentStatus: "agent", StepStatus: "step"}[type(self.target)]

    def allows(self, current: str) -> bool:
        return current in self.sources

    def check(self, current: str, what: str = "") -> None:
        """Raise :class:`InvalidTransition` unless a row in ``current`` may make this move.
        ``what`` names the row in the message (e.g. ``"run 0af3…"``)."""
        if not self.allows(current):
            raise self.refused(current, what)

    def refused(self, current: str, what: str = "") -> InvalidTransition:
        """The error for attempting this move from ``current``."""
        sources = " or ".join(sorted(self.sources)) or "nowhere"
        return InvalidTransition(
            f"cannot {self.name} {what or self.subject}: it is {current}, and {self.name} moves a "
            f"{self.subject} only from {sources} to {self.target}"
        )


def _t(name: str, sources: Iterable[S], target: S) -> Transition[S]:
    return Transition(name, frozenset(sources), target)


R, A, St = RunStatus, AgentStatus, StepStatus

# ------------------------------------------------------------------- runs
#: The orchestrator's final answer ends its run.
RUN_SUCCEED = _t("succeed", [R.RUNNING], R.SUCCEEDED)
#: An agent failed for good (or a fatal model error, or the wall-time limit) ends the run.
RUN_FAIL = _t("fail", [R.RUNNING], R.FAILED)
#: A user cancels a running run (cancelling a finished run changes nothing).
RUN_CANCEL = _t("cancel", [R.RUNNING], R.CANCELLED)
#: Resume: a failed or cancelled run runs again, reusing everything it committed.
RUN_RESUME = _t("resume", [R.FAILED, R.CANCELLED], R.RUNNING)
RUN_TRANSITIONS: tuple[Transition[RunStatus], ...] = (RUN_SUCCEED, RUN_FAIL, RUN_CANCEL, RUN_RESUME)
#: How a run ends, by the status it ends in.
RUN_ENDS: Mapping[RunStatus, Transition[RunStatus]] = {t.target: t for t in (RUN_SUCCEED, RUN_FAIL, RUN_CANCEL)}

# ----------------------------------------------------------------- agents
AGENT_SUCCEED = _t("succeed", [A.RUNNING], A.SUCCEEDED)
AGENT_FAIL = _t("fail", [A.RUNNING], A.FAILED)
#: The agents still running when their run is cancelled.
AGENT_CANCEL = _t("cancel", [A.RUNNING], A.CANCELLED)
#: Resume re-opens the failed and cancelled agents whose result was never delivered.
AGENT_REOPEN = _t("reopen", [A.FAILED, A.CANCELLED], A.RUNNING)
AGENT_TRANSITIONS: tuple[Transition[AgentStatus], ...] = (AGENT_SUCCEED, AGENT_FAIL, AGENT_CANCEL, AGENT_REOPEN)
#: How an agent ends, by the status it ends in.
AGENT_ENDS: Mapping[AgentStatus, Transition[AgentStatus]] = {
    t.target: t for t in (AGENT_SUCCEED, AGENT_FAIL, AGENT_CANCEL)
}

# ------------------------------------------------------------------ steps
#: A worker takes a ready step under a lease, bumping its fence.
STEP_CLAIM = _t("claim", [St.READY], St.RUNNING)
#: A worker takes over a running step whose lease expired (its worker is presumed dead).
STEP_TAKE_OVER = _t("take over", [St.RUNNING], St.RUNNING)
#: The holder of a step renews its lease.
STEP_RENEW = _t("renew the lease of", [St.RUNNING], St.RUNNING)
#: The holder hands a step back untouched (worker shutdown).
STEP_RELEASE = _t("release", [St.RUNNING], St.READY)
#: A step whose lease expired, or whose owner is known dead, becomes claimable again.
STEP_EXPIRE = _t("expire", [St.RUNNING], St.READY)
#: A ready step nobody started (lost publish) is published again.
STEP_REPUBLISH = _t("republish", [St.READY], St.READY)
#: A claimed step commits its outcome.
STEP_SUCCEED = _t("succeed", [St.RUNNING], St.SUCCEEDED)
#: assign_task launched its subagent: the step waits for it without holding a worker.
STEP_WAIT = _t("wait", [St.RUNNING], St.WAITING)
#: A tool step gets its result: from its worker (running), from its subagent (waiting), or as the
#: error that says why it was given up (ready or running) or rejected (awaiting approval).
STEP_DELIVER = _t("deliver", [St.READY, St.RUNNING, St.WAITING, St.AWAITING_APPROVAL], St.SUCCEEDED)
#: A human approved a tool call: it becomes claimable like any ready step.
STEP_APPROVE = _t("approve", [St.AWAITING_APPROVAL], St.READY)
#: A claimed step failed for good.
STEP_FAIL = _t("fail", [St.RUNNING], St.FAILED)
#: An LLM step that must not run again (crashed its workers, or used up its attempts) is given up.
STEP_GIVE_UP = _t("give up", [St.READY, St.RUNNING], St.FAILED)
#: Every open step of a run that ends other than by success.
STEP_CANCEL = _t("cancel", [St.READY, St.RUNNING, St.WAITING, St.AWAITING_APPROVAL], St.CANCELLED)
#: Resume: a closed assign_task whose subagent exists waits for it again (it never re-launches).
STEP_REWAIT = _t("wait again", [St.FAILED, St.CANCELLED], St.WAITING)
#: Resume: a closed tool call whose approval was never decided waits for it again (never runs unapproved).
STEP_REAWAIT = _t("await approval again", [St.FAILED, St.CANCELLED], St.AWAITING_APPROVAL)
#: Resume: any other closed step of a re-opened agent runs again.
STEP_REOPEN = _t("reopen", [St.FAILED, St.CANCELLED], St.READY)
STEP_TRANSITIONS: tuple[Transition[StepStatus], ...] = (
    STEP_CLAIM,
    STEP_TAKE_OVER,
    STEP_RENEW,
    STEP_RELEASE,
    STEP_EXPIRE,
    STEP_REPUBLISH,
    STEP_SUCCEED,
    STEP_WAIT,
    STEP_DELIVER,
    STEP_APPROVE,
    STEP_FAIL,
    STEP_GIVE_UP,
    STEP_CANCEL,
    STEP_REWAIT,
    STEP_REAWAIT,
    STEP_REOPEN,
)


def moves(statuses: Iterable[S], transitions: Iterable[Transition[S]]) -> dict[S, frozenset[S]]:
    """The allowed-move table of a machine: each status and the statuses its transitions lead to."""
    table: dict[S, set[S]] = {s: set() for s in statuses}
    for t in transitions:
        for source in t.sources:
            table[source].add(t.target)
    return {s: frozenset(targets) for s, targets in table.items()}


RUN_MOVES = moves(RunStatus, RUN_TRANSITIONS)
AGENT_MOVES = moves(AgentStatus, AGENT_TRANSITIONS)
STEP_MOVES = moves(StepStatus, STEP_TRANSITIONS)

RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
AGENT_TERMINAL = frozenset({AgentStatus.SUCCEEDED, AgentStatus.FAILED, AgentStatus.CANCELLED})
STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED})
#: Steps not finished yet: the ones a cancel closes.
STEP_OPEN = STEP_CANCEL.sources


def check_run_move(current: RunStatus, target: RunStatus) -> None:
    """Raise :class:`InvalidTransition` unless a run may go from *current* to *target*."""
    if target not in RUN_MOVES[current]:
        raise InvalidTransition(f"a {current} run cannot become {target}")


def check_step_move(current: StepStatus, target: StepStatus) -> None:
    """Raise :class:`InvalidTransition` unless a step may go from *current* to *target*."""
    if target not in STEP_MOVES[current]:
        raise InvalidTransition(f"a {current} step cannot become {target}")
