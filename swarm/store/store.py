"""StateStore: every write swarm makes, each an intention-revealing transaction, and every read.

The store is composed of parts, one per concern, that share one :class:`~swarm.store.session.Session`
(connections, the database error table, conflict retries):

* :mod:`~swarm.store.runs` — a run's lifecycle (create, cancel, resume);
* :mod:`~swarm.store.leases` — claim, heartbeat, release, sweep, and giving up poison steps;
* :mod:`~swarm.store.commits` — turn commits (model turns, tool results, failed steps);
* :mod:`~swarm.store.subagents` — create_subagent and assign_task;
* :mod:`~swarm.store.approvals` — human decisions on tool calls (requested by turn commits);
* :mod:`~swarm.store.artifacts` — a run's files;
* :mod:`~swarm.store.views`, :mod:`~swarm.store.keys`, :mod:`~swarm.store.export` — read models;
* :mod:`~swarm.store.outcomes` — how an outcome travels up (fan-in, an agent's end, a run's end).

StateStore itself only delegates: it is the one object engine, workers, API, CLI and benchmarks hold.

Concurrency rules, which all parts follow:

* A step is claimed by a conditional UPDATE that bumps its fencing token; its commit is an UPDATE
  guarded by that token. Two workers racing for one step: one claim wins; a presumed-dead worker's
  late commit matches 0 rows and raises :class:`FenceLost`, rolling its whole transaction back.
* A step's result, the messages it adds and the steps it makes ready commit in ONE transaction;
  the caller dispatches the returned :class:`StepRef` s only after that commit.
* Every status change is a named transition of :mod:`swarm.domain.status`, guarded in SQL.
* Budgets are granted under the run row's lock; fan-in decrements the agent's counter atomically.
* Lock order. Transactions that decide on the run take its row lock first, then steps, then
  agents: cancel, resume, fail_step, giving up a step, the sweeper's time limit, a refused
  assign_task, and commit_llm's pessimistic retry (run → step → agent). The hot commits do not lock
  the run up front: commit_tool locks its step, then its agent (fan-in), and, when that ends a
  subagent, the parent's step and agent; commit_llm's optimistic path locks its step, then its
  agent, and updates the run row LAST (a conditional UPDATE that re-checks the budget). So a
  committing turn (step → run) and a cancel (run → steps) can deadlock: the database aborts one of
  them with :class:`StoreConflict`, and both sides retry (cancel_run here, the executor around a
  commit).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine

from swarm.constants import DEFAULT_MAX_REPEATS, MAX_STEP_ATTEMPTS
from swarm.domain import budget
from swarm.domain.llm import LLMResponse
from swarm.domain.quotas import TenantQuota
from swarm.domain.status import StepStatus
from swarm.domain.turns import TurnPlan
from swarm.domain.workspace import Changes
from swarm.store import artifacts
from swarm.store.approvals import Approvals
from swarm.store.budgets import Budgets
from swarm.store.cluster import ClusterState, RoleHolder
from swarm.store.commits import Commits
from swarm.store.db import make_engine
from swarm.store.export import Export
from swarm.store.fork import Forks
from swarm.store.keys import KeyInfo, Keys
from swarm.store.leases import Leases
from swarm.store.retention import Retention
from swarm.store.runs import Runs
from swarm.store.session import Session, new_id, owner_id
from swarm.store.subagents import Subagents
from swarm.store.types import AgentContext, ArtifactInfo, Claim, RunSpec, RunSummary, StepRef
from swarm.store.views import LiveViews, Views
from swarm.store.writes import OPEN

__all__ = ["OPEN", "StateStore", "new_id", "owner_id"]


class StateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = Session(engine)
        self.runs = Runs(self.session)
        self.leases = Leases(self.session)
        self.commits = Commits(self.session)
        self.subagents = Subagents(self.session)
        self.files = artifacts.Reads(self.session)
        self.views = Views(self.session)
        self.live = LiveViews(self.session)
        self.keys = Keys(self.session)
        self.export = Export(self.session, self.views)
        self.retention = Retention(self.session, self.live)
        self.forks = Forks(self.session, self.live, self.runs)
        self.budgets = Budgets(self.session)
        self.cluster = ClusterState(self.session)
        self.approvals = Approvals(self.session)

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> StateStore:
        return cls(make_engine(url, pool_size=pool_size))

    @property
    def dialect(self) -> str:
        return self.session.dialect

    # The session's tx and read, for callers outside the store. Assigning either replaces it for
    # every part of the store (tests simulate a database outage so).

    @property
    def tx(self) -> Callable[[], AbstractContextManager[Connection]]:
        """One write transaction; database connectivity errors become :class:`StoreUnavailable`."""
        return self.session.tx

    @tx.setter
    def tx(self, fn: Callable[[], AbstractContextManager[Connection]]) -> None:
        self.session.tx = fn  # type: ignore[method-assign, assignment]

    @property
    def read(self) -> Callable[[], AbstractContextManager[Connection]]:
        """One read-only connection (autocommit on PostgreSQL)."""
        return self.session.read

    @read.setter
    def read(self, fn: Callable[[], AbstractContextManager[Connection]]) -> None:
        self.session.read = fn  # type: ignore[method-assign, assignment]

    # ------------------------------------------------------------------ runs

    def create_run(
        self, spec: RunSpec, quota: TenantQuota | None = None, owner: tuple[str, float] | None = None
    ) -> tuple[str, list[StepRef]]:
        return self.runs.create(spec, quota, owner)

    def fork_run(
        self,
        run_id: str,
        at: str,
        *,
        message: str | None = None,
        tenant: str | None = None,
        quota: TenantQuota | None = None,
    ) -> tuple[str, list[StepRef]]:
        """A new run with ``run_id``'s history up to its step ``at`` (``domain/fork.py``); returns
        its id and the steps to dispatch. The origin is not changed."""
        return self.forks.fork(run_id, at, message=message, tenant=tenant, quota=quota)

    def cancel_run(self, run_id: str, reason: str = "cancelled by user") -> bool:
        """Cancel a run: every open step is cancelled in the same transaction, so no worker can
        commit (fence) or start (claim checks the run) anything of it afterwards. False if the run
        had already ended."""
        return self.runs.cancel(run_id, reason)

    def resume_run(
        self,
        run_id: str,
        *,
        max_cost_pico: int | None = None,
        max_tokens: int | None = None,
        owner: tuple[str, float] | None = None,
    ) -> list[StepRef]:
        """Re-open a failed, cancelled or interrupted run; returns the steps to dispatch. Spend
        caps given here replace the run's (a budget raised to continue a run it stopped). The
        run now belongs to ``owner`` (process, lease seconds), or to the cluster (None)."""
        return self.runs.resume(run_id, max_cost_pico=max_cost_pico, max_tokens=max_tokens, owner=owner)

    # --------------------------------------------------------------- budgets

    def reserve(self, run_id: str, worst: budget.Worst) -> bool:
        return self.budgets.reserve(run_id, worst)

    def release_reservation(self, run_id: str, pico: int, tokens: int) -> None:
        self.budgets.release(run_id, pico, tokens)

    def budget_state(self, run_id: str) -> budget.State:
        return self.budgets.state(run_id)

    # ---------------------------------------------------------------- leases

    def claim(self, step_id: str, owner: str, lease: float, max_attempts: int = MAX_STEP_ATTEMPTS) -> Claim | None:
        return self.leases.claim(step_id, owner, lease, max_attempts)

    def heartbeat(self, owner: str, lease: float, steps: Collection[str] | None = None) -> int:
        return self.leases.heartbeat(owner, lease, steps)

    def own_runs(self, owner: str, lease: float, run_ids: Collection[str]) -> int:
        return self.leases.own_runs(owner, lease, run_ids)

    def still_claimed(self, claim: Claim) -> bool:
        return self.leases.still_claimed(claim)

    def release(self, claim: Claim) -> None:
        self.leases.release(claim)

    def run_mcp_config(self, run_id: str) -> str | None:
        return self.leases.run_mcp_config(run_id)

    def sweep(
        self, republish_after: float, max_attempts: int = MAX_STEP_ATTEMPTS, run_ids: Collection[str] | None = None
    ) -> list[StepRef]:
        """Stuck work to re-dispatch (``Leases.sweep``), and the approval requests that expired,
        rejected ("approval expired"): the steps their rejections made ready."""
        return self.leases.sweep(republish_after, max_attempts, run_ids) + self.approvals.expire(run_ids)

    def release_dead_owners(
        self, run_id: str, is_dead: Callable[[str], bool], max_attempts: int = MAX_STEP_ATTEMPTS
    ) -> int:
        return self.leases.release_dead_owners(run_id, is_dead, max_attempts)

    # --------------------------------------------------------------- cluster

    def cluster_id(self) -> str:
        """This deployment's id (created on first use); step messages carry it."""
        return self.cluster.identity()

    def hold_role(self, role: str, holder: str, ttl: float) -> bool:
        """Renew or take over a cluster-wide role (the sweeper); True while ``holder`` has it."""
        return self.cluster.hold(role, holder, ttl)

    def release_role(self, role: str, holder: str) -> bool:
        return self.cluster.release(role, holder)

    def role_holder(self, role: str) -> RoleHolder:
        return self.cluster.holder(role)

    # --------------------------------------------------------------- commits

    def agent_context(self, claim: Claim, *, vision: bool = True) -> AgentContext:
        return self.commits.agent_context(claim, vision=vision)

    def commit_llm(
        self,
        claim: Claim,
        response: LLMResponse,
        plan: TurnPlan,
        *,
        max_repeats: int = DEFAULT_MAX_REPEATS,
        cost: int | None = None,
        reserved: tuple[int, int] = (0, 0),
    ) -> list[StepRef]:
        return self.commits.commit_llm(claim, response, plan, max_repeats=max_repeats, cost=cost, reserved=reserved)

    def commit_tool(
        self,
        claim: Claim,
        content: str,
        is_error: bool,
        changes: Changes | None = None,
        images: list[dict[str, Any]] | None = None,
    ) -> list[StepRef]:
        return self.commits.commit_tool(claim, content, is_error, changes, images)

    def fail_step(
        self, claim: Claim, error: str, *, fail_run: bool = False, release: tuple[int, int] = (0, 0)
    ) -> list[StepRef]:
        return self.commits.fail_step(claim, error, fail_run=fail_run, release=release)

    def create_subagent(self, claim: Claim, name: str, system_prompt: str) -> list[StepRef]:
        return self.subagents.create(claim, name, system_prompt)

    def launch_subagent(self, claim: Claim, agent_name: str, prompt: str) -> list[StepRef]:
        return self.subagents.launch(claim, agent_name, prompt)

    def launch_subagents(self, claim: Claim, agent_name: str, prompts: Sequence[str]) -> list[StepRef]:
        return self.subagents.launch_many(claim, agent_name, prompts)

    # ------------------------------------------------------------- artifacts

    def artifact_index(self, run_id: str) -> list[ArtifactInfo]:
        return self.files.index(run_id)

    def artifact_contents(
        self, run_id: str, files: Sequence[ArtifactInfo], *, read_bytes: int = artifacts.READ_BYTES
    ) -> Iterator[tuple[str, str, bytes]]:
        return self.files.contents(run_id, files, read_bytes=read_bytes)

    def artifacts(self, run_id: str) -> dict[str, tuple[str, bytes]]:
        return self.files.all(run_id)

    def run_files(self, run_id: str, tenant: str | None = None) -> list[ArtifactInfo]:
        """A run's files (NotFound for another tenant's run), each with the step that last wrote it."""
        self.run_status(run_id, tenant)
        return self.files.index(run_id)

    def run_file(self, run_id: str, path: str, tenant: str | None = None) -> tuple[ArtifactInfo, bytes]:
        """One of a run's files whole (NotFound for another tenant's run, or no such file)."""
        self.run_status(run_id, tenant)
        return self.files.read(run_id, path)

    # ----------------------------------------------------------- read models

    def run_summary(self, run_id: str, tenant: str | None = None) -> RunSummary:
        return self.views.run_summary(run_id, tenant)

    def list_runs(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        id_prefix: str | None = None,
    ) -> list[RunSummary]:
        return self.views.list_runs(
            tenant=tenant, status=status, state=state, limit=limit, offset=offset, id_prefix=id_prefix
        )

    def agent_tree(self, run_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        return self.views.agent_tree(run_id, tenant)

    def agent_counts(self, run_id: str) -> dict[str, int]:
        return self.views.agent_counts(run_id)

    def events_since(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        return self.views.events_since(run_id, after_id, limit)

    def steps_timeline(self, run_id: str) -> list[dict[str, Any]]:
        return self.views.steps_timeline(run_id)

    def steps_of(self, run_id: str, statuses: Sequence[StepStatus] | None = None) -> list[StepRef]:
        return self.views.steps_of(run_id, statuses)

    def storage_rows(self, run_id: str) -> dict[str, int]:
        return self.views.storage_rows(run_id)

    def events_after(self, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        return self.live.events_after(after_id, limit)

    def run_events_between(self, run_id: str, after_id: int, upto_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        return self.live.run_events_between(run_id, after_id, upto_id, limit)

    def xid_snapshot(self) -> tuple[int, int | None] | None:
        return self.live.xid_snapshot()

    def recent_event_heads(self, limit: int = 5000) -> list[tuple[int, float]]:
        return self.live.recent_event_heads(limit)

    def last_run_event_id(self, run_id: str) -> int:
        return self.live.last_run_event_id(run_id)

    def run_status(self, run_id: str, tenant: str | None = None) -> str:
        return self.live.run_status(run_id, tenant)

    def run_state(self, run_id: str) -> str:
        return self.views.run_state(run_id)

    def metrics_snapshot(self) -> dict[str, Any]:
        return self.live.metrics_snapshot()

    def trajectory(self, run_id: str, tenant: str | None = None) -> Iterator[dict[str, Any]]:
        return self.export.trajectory(run_id, tenant)

    def trajectory_jsonl(self, run_id: str, tenant: str | None = None) -> Iterator[str]:
        return self.export.trajectory_jsonl(run_id, tenant)

    # ------------------------------------------------------------------ keys

    def create_key(
        self, tenant: str = "default", name: str | None = None, *, admin: bool = False, expires_in: float | None = None
    ) -> tuple[KeyInfo, str]:
        return self.keys.create_key(tenant, name, admin=admin, expires_in=expires_in)

    def list_keys(self, *, tenant: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        return self.keys.list_keys(tenant=tenant, include_revoked=include_revoked)

    def revoke_key(self, ref: str) -> KeyInfo:
        return self.keys.revoke_key(ref)

    def authenticate(self, key: str) -> KeyInfo | None:
        return self.keys.authenticate(key)
