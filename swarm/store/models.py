"""The ORM models: declarative classes over the Core tables of ``tables.py`` (the schema), for
the few places that query through the ORM (export, keys, tests) and for Alembic's metadata.
The store's statements use the tables themselves; importing this module costs ``sqlalchemy.orm``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped

from swarm.store.tables import (
    AGENTS,
    API_KEYS,
    APPROVALS,
    ARTIFACTS,
    CLUSTER_IDENTITY,
    CLUSTER_LEASES,
    DEFS,
    EVENTS,
    MESSAGES,
    METRIC_TOTALS,
    RUNS,
    STEPS,
    TENANT_SPEND,
    JSONType,
    metadata,
)

__all__ = [
    "AGENTS",
    "API_KEYS",
    "APPROVALS",
    "ARTIFACTS",
    "CLUSTER_IDENTITY",
    "CLUSTER_LEASES",
    "DEFS",
    "EVENTS",
    "MESSAGES",
    "METRIC_TOTALS",
    "RUNS",
    "STEPS",
    "TENANT_SPEND",
    "JSONType",
]


class Base(DeclarativeBase):
    metadata = metadata


class Run(Base):
    __table__ = RUNS

    id: Mapped[str]
    tenant: Mapped[str | None]
    task: Mapped[str]
    status: Mapped[str]
    reason: Mapped[str | None]
    result: Mapped[str | None]
    model: Mapped[str]
    max_subagents: Mapped[int]
    max_tool_calls: Mapped[int]
    max_steps_per_agent: Mapped[int]
    max_wall_seconds: Mapped[float]
    max_depth: Mapped[int]
    max_spawns_per_turn: Mapped[int | None]
    max_cost_pico: Mapped[int | None]
    max_tokens: Mapped[int | None]
    mcp_config: Mapped[str | None]
    provider: Mapped[str | None]
    provider_concurrency: Mapped[int | None]
    provider_rpm: Mapped[int | None]
    provider_tpm: Mapped[int | None]
    reserved_pico: Mapped[int]
    reserved_tokens: Mapped[int]
    subagents: Mapped[int]
    tool_calls: Mapped[int]
    llm_calls: Mapped[int]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    tokens_cached: Mapped[int]
    cost_pico: Mapped[int | None]
    critical_steps: Mapped[int | None]
    total_steps: Mapped[int | None]
    created_at: Mapped[float]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    deadline: Mapped[float | None]
    wall_before: Mapped[float]
    idempotency_key: Mapped[str | None]
    approve_tools: Mapped[Any]
    approval_timeout: Mapped[float | None]
    forked_from_run_id: Mapped[str | None]
    forked_at_step_id: Mapped[str | None]
    owner: Mapped[str | None]
    owner_until: Mapped[float | None]


class Agent(Base):
    __table__ = AGENTS

    id: Mapped[str]
    run_id: Mapped[str]
    parent_id: Mapped[str | None]
    parent_step_id: Mapped[str | None]
    item: Mapped[int | None]
    parent_turn: Mapped[int | None]
    name: Mapped[str]
    depth: Mapped[int]
    status: Mapped[str]
    reason: Mapped[str | None]
    result: Mapped[str | None]
    steps: Mapped[int]
    next_seq: Mapped[int]
    pending_tools: Mapped[int]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    tokens_cached: Mapped[int]
    cost_pico: Mapped[int | None]
    created_at: Mapped[float]
    finished_at: Mapped[float | None]


class AgentDef(Base):
    """A subagent type made by ``create_subagent(name, system_prompt)``, reusable within its run."""

    __table__ = DEFS

    id: Mapped[int]
    run_id: Mapped[str]
    name: Mapped[str]
    system_prompt: Mapped[str]
    created_by: Mapped[str]
    created_at: Mapped[float]


class Message(Base):
    __table__ = MESSAGES

    id: Mapped[int]
    run_id: Mapped[str]
    agent_id: Mapped[str]
    seq: Mapped[int]
    role: Mapped[str]
    content: Mapped[Any]
    reasoning_content: Mapped[str | None]
    tool_calls: Mapped[Any]
    tool_call_id: Mapped[str | None]
    created_at: Mapped[float]
    images: Mapped[Any]


class Step(Base):
    """One LLM call or one tool call: the unit of durable work."""

    __table__ = STEPS

    id: Mapped[str]
    run_id: Mapped[str]
    agent_id: Mapped[str]
    kind: Mapped[str]
    status: Mapped[str]
    turn: Mapped[int]
    idx: Mapped[int]
    tool_name: Mapped[str | None]
    tool_call_id: Mapped[str | None]
    arguments: Mapped[str | None]
    call_key: Mapped[str | None]
    result: Mapped[str | None]
    is_error: Mapped[bool]
    msg_seq: Mapped[int | None]
    child_agent_id: Mapped[str | None]
    pending_children: Mapped[int | None]
    attempt: Mapped[int]
    fence: Mapped[int]
    owner: Mapped[str | None]
    lease_until: Mapped[float | None]
    ready_at: Mapped[float | None]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    tokens_cached: Mapped[int | None]
    tokens_reasoning: Mapped[int | None]
    cost_pico: Mapped[int | None]
    error: Mapped[str | None]
    note: Mapped[str | None]


class Event(Base):
    """Append-only log that live views follow (id is the SSE event id)."""

    __table__ = EVENTS

    id: Mapped[int]
    run_id: Mapped[str]
    ts: Mapped[float]
    type: Mapped[str]
    agent_id: Mapped[str | None]
    step_id: Mapped[str | None]
    data: Mapped[Any]


class Artifact(Base):
    """A file of a run's workspace, kept in the database so any worker on any machine sees it."""

    __table__ = ARTIFACTS

    id: Mapped[int]
    run_id: Mapped[str]
    path: Mapped[str]
    data: Mapped[bytes]
    sha256: Mapped[str]
    size: Mapped[int]
    updated_at: Mapped[float]
    step_id: Mapped[str | None]


class ApiKey(Base):
    """An API key of the REST server. Only the key's sha256 is stored: the key itself is shown
    once, at creation. ``prefix`` is a non-secret handle for listing and revoking."""

    __table__ = API_KEYS

    id: Mapped[str]
    prefix: Mapped[str]
    key_hash: Mapped[str]
    tenant: Mapped[str]
    name: Mapped[str | None]
    admin: Mapped[bool]
    created_at: Mapped[float]
    revoked_at: Mapped[float | None]
    expires_at: Mapped[float | None]
    last_used_at: Mapped[float | None]


class ClusterIdentity(Base):
    """This deployment's id: one row, written by the first process that asks for it. Every step
    message carries it, and a worker refuses a message whose id is not its database's."""

    __table__ = CLUSTER_IDENTITY

    singleton: Mapped[int]
    cluster_id: Mapped[str]
    created_at: Mapped[float]


class ClusterLease(Base):
    """A cluster-wide role held by one process at a time (the sweeper): whoever holds an unexpired
    lease has it; a holder that stops renewing loses it when ``expires_at`` (database clock) passes."""

    __table__ = CLUSTER_LEASES

    name: Mapped[str]
    holder: Mapped[str | None]
    acquired_at: Mapped[float | None]
    expires_at: Mapped[float]


class Approval(Base):
    """A human decision on one tool call (its step): requested when the model turn that made the
    call commits, decided once (``decision`` goes from NULL to approved or rejected, never back)."""

    __table__ = APPROVALS

    step_id: Mapped[str]
    run_id: Mapped[str]
    agent_id: Mapped[str]
    tool: Mapped[str]
    arguments: Mapped[str | None]
    requested_at: Mapped[float]
    expires_at: Mapped[float | None]
    decision: Mapped[str | None]
    note: Mapped[str | None]
    decided_at: Mapped[float | None]
    decided_by: Mapped[str | None]


class MetricTotal(Base):
    """One figure of /metrics summed over every finished run's steps (``store/step_stats.py``),
    e.g. ``steps:llm:succeeded`` or ``duration:tool:le:0.5``."""

    __table__ = METRIC_TOTALS

    name: Mapped[str]
    value: Mapped[float]


class TenantSpend(Base):
    """What a tenant's model calls spent, and reserved while in flight, on one UTC day: the
    daily USD cap (SWARM_TENANT_MAX_USD_PER_DAY) is kept against this row."""

    __table__ = TENANT_SPEND

    tenant: Mapped[str]
    day: Mapped[str]
    spent_pico: Mapped[int]
    reserved_pico: Mapped[int]
