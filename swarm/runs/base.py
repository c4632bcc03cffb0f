"""The Runs interface: submit, resume, cancel and read runs, wherever they execute.

Three implementations share it — embedded (this process's threads), cluster (Celery workers) and
remote (a swarm server over REST) — so the CLI has one code path per command and the API's routes
call the same service the CLI does. Reads take a ``scope``: the tenant whose runs are visible
(None: every tenant). A remote server applies its API key's own scope and ignores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from swarm.domain import approvals, run_ids, run_limits
from swarm.domain.approvals import Decision
from swarm.domain.status import RunStatus
from swarm.exceptions import InputError
from swarm.store.types import ApprovalInfo, ArtifactInfo, Attachment, RunSummary

if TYPE_CHECKING:
    from swarm.store.retention import Deleted

#: What a follower is shown while a run runs: its summary and its agents counted by status.
Progress = Callable[[RunSummary, dict[str, int]], None]


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A run as a user asks for it. Limits left None take the executing side's defaults (the
    server's, for a remote run)."""

    task: str
    model: str | None = None
    max_subagents: int | None = None
    max_tool_calls: int | None = None
    max_steps_per_agent: int | None = None
    max_wall_seconds: float | None = None
    max_depth: int | None = None
    #: Subagents one turn may launch (None: no cap beyond max_subagents). Refused below 1.
    max_spawns_per_turn: int | None = None
    attachments: tuple[Attachment, ...] = ()
    tenant: str | None = None
    #: Spend caps: USD and tokens (in + out) of the run's model calls.
    max_usd: float | None = None
    max_tokens: int | None = None
    #: Submitting again with the same key returns the run the first submission created.
    idempotency_key: str | None = None
    #: Tools whose calls wait for a human decision, on top of the deployment's SWARM_APPROVE_TOOLS.
    approve_tools: tuple[str, ...] = ()
    #: The run's own MCP servers: mcpServers JSON text (docs/mcp.md); no literal secrets.
    mcp: str | None = None
    #: The provider of the run's model calls (a SWARM_PROVIDERS name of the executing side; None:
    #: its SWARM_LLM_* one), and the run's own limits for it, which may only be lower than its own.
    provider: str | None = None
    provider_concurrency: int | None = None
    provider_rpm: int | None = None
    provider_tpm: int | None = None

    def __post_init__(self) -> None:
        # The same bounds and words as the CLI's options and the API's models (InputError).
        run_limits.check_task(self.task)
        run_limits.check_limits(
            max_subagents=self.max_subagents,
            max_tool_calls=self.max_tool_calls,
            max_steps_per_agent=self.max_steps_per_agent,
            max_wall_seconds=self.max_wall_seconds,
            max_depth=self.max_depth,
            max_spawns_per_turn=self.max_spawns_per_turn,
            max_usd=self.max_usd,
            max_tokens=self.max_tokens,
        )
        approvals.parse_patterns(self.approve_tools)  # InputError, before anything is sent
        for label, value in (
            ("provider concurrency", self.provider_concurrency),
            ("provider rpm", self.provider_rpm),
            ("provider tpm", self.provider_tpm),
        ):
            if value is not None and value < 1:
                raise InputError(f"the run's {label} must be at least 1, got {value}")

    def limits(self) -> dict[str, Any]:
        """The limits that were given, by their API names."""
        given = {
            "max_subagents": self.max_subagents,
            "max_tool_calls": self.max_tool_calls,
            "max_steps_per_agent": self.max_steps_per_agent,
            "max_wall_seconds": self.max_wall_seconds,
            "max_depth": self.max_depth,
            "max_spawns_per_turn": self.max_spawns_per_turn,
            "max_usd": self.max_usd,
            "max_tokens": self.max_tokens,
        }
        return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class Cancelled:
    id: str
    status: RunStatus
    changed: bool  #: False if the run was not running: cancelling is idempotent


class Runs(Protocol):
    #: ``embedded``, ``cluster`` or ``remote``
    mode: str
    #: Where the runs execute, for messages ("the cluster", a server's URL, ...)
    where: str

    def submit(self, request: RunRequest) -> str:
        """Start a run; returns its id at once."""

    def resume(
        self,
        run_id: str,
        *,
        scope: str | None = None,
        max_usd: float | None = None,
        max_tokens: int | None = None,
    ) -> int:
        """Continue a run from where it stood; returns how many open steps were dispatched.
        ``max_usd`` / ``max_tokens`` replace the run's spend caps (raise them to continue a run
        its budget stopped)."""

    def cancel(self, run_id: str, *, scope: str | None = None) -> Cancelled: ...

    def fork(self, run_id: str, at: str, *, message: str | None = None, scope: str | None = None) -> str:
        """Start a new run with ``run_id``'s committed history up to its step ``at`` (a step id or
        a unique prefix of one), going on from there; ``message`` replaces the last message the
        step's agent reads before that model call. Returns the new run's id at once."""

    def summary(self, run_id: str, *, scope: str | None = None) -> RunSummary: ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: str | None = None,
        id_prefix: str | None = None,
    ) -> list[RunSummary]:
        """Newest first; ``status`` is the state readers are shown (``domain/liveness.RunState``):
        ``running`` leaves out the interrupted runs, ``interrupted`` lists only them."""

    def resolve(self, run_id: str, *, scope: str | None = None) -> str:
        """The whole id of the run ``run_id`` names: itself, or the one run it is a unique prefix of."""

    def agents(self, run_id: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        """The agent tree, parents before children."""

    def timeline(self, run_id: str, *, scope: str | None = None) -> dict[str, Any]:
        """Agents and every step with its start and end (the dashboard's Gantt chart)."""

    def events(self, run_id: str, *, after: int = 0, scope: str | None = None) -> Iterator[dict[str, Any]]:
        """The run's events with id > ``after``, none missed or repeated, until the run has ended."""

    def delete(self, run_id: str, *, scope: str | None = None) -> Deleted:
        """Delete an ended run with all its rows and files (StateError for a running one)."""

    def export(self, run_id: str, *, scope: str | None = None) -> Iterator[str]:
        """The trajectory as JSON Lines (newline included); an unknown run fails on the first line."""

    def approvals(
        self,
        run_id: str | None = None,
        *,
        pending: bool = False,
        scope: str | None = None,
        step_prefix: str | None = None,
    ) -> list[ApprovalInfo]:
        """A run's approval requests, oldest first (only the undecided with ``pending``); with no
        run, every visible run's. ``step_prefix``: only steps whose id starts with it."""

    def decide(
        self,
        step_id: str,
        decision: Decision,
        note: str | None = None,
        *,
        run_id: str | None = None,
        scope: str | None = None,
        by: str = "",
    ) -> ApprovalInfo:
        """Approve or reject a tool call awaiting approval, once (AlreadyDecided, a StateError, the
        second time). ``step_id`` may be a unique prefix; a rejection's ``note`` is the reason the
        model is told. The approved call is dispatched; a rejection reaches the model as a tool error."""

    def files(self, run_id: str, *, scope: str | None = None) -> list[ArtifactInfo]:
        """Every file of the run's workspace: path, size, sha256 and the step that last wrote it."""

    def read_file(self, run_id: str, path: str, *, scope: str | None = None) -> tuple[ArtifactInfo, bytes]:
        """One file of the run's workspace, whole (``path`` checked by ``domain.files.check_path``:
        InputError; NotFound for no such file, or another tenant's run)."""

    def wait(self, run_id: str, on_progress: Progress | None = None) -> RunSummary:
        """Block until the run has ended; ``on_progress`` is called as it advances."""

    def check(self) -> str | None:
        """None if runs can be submitted, else what is wrong (for /readyz)."""

    def provider(self) -> list[dict[str, Any]]:
        """The model provider's capacity now — limit, calls in flight and waiting, 429s seen
        (docs/providers.md); empty when no provider limits are configured."""

    def close(self) -> None: ...


class _Lister(Protocol):
    def list_runs(self, *, limit: int, scope: str | None, id_prefix: str | None) -> list[RunSummary]: ...


class _ApprovalLister(Protocol):
    def approvals(
        self,
        run_id: str | None = None,
        *,
        pending: bool = False,
        scope: str | None = None,
        step_prefix: str | None = None,
    ) -> list[ApprovalInfo]: ...


def resolve_step(runs: _ApprovalLister, step_id: str, scope: str | None = None) -> tuple[str, str]:
    """(run id, step id) of the approval request ``step_id`` (whole, or a unique prefix) names,
    decided or not (so a second decision is told it is one, not that the step is unknown)."""
    prefix = approvals.step_prefix(step_id)
    found = runs.approvals(None, scope=scope, step_prefix=prefix)[:2]
    return approvals.pick_step(step_id, [(a.run_id, a.step_id) for a in found])


def resolve(runs: _Lister, run_id: str, scope: str | None = None) -> str:
    """What every implementation's :meth:`Runs.resolve` does: a whole id is taken as it is (a run
    that does not exist fails where it is used); a prefix must name exactly one run."""
    if run_ids.is_whole(run_id):
        return run_id
    matches = runs.list_runs(id_prefix=run_ids.prefix(run_id), limit=2, scope=scope)
    return run_ids.pick(run_id, [r.id for r in matches])
