"""The schema. Every table is append-mostly and grows linearly with the work done:
one row per message, per step (LLM call or tool call), per event — never a re-stored conversation.

Times are Unix epoch seconds (float). Lease and readiness times are set from the database's clock
(see :func:`swarm.store.db.db_now`) so that workers on machines with skewed clocks agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from swarm.domain.status import AgentStatus, RunStatus, StepKind, StepStatus

#: JSONB on PostgreSQL, JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK that *column* holds one of the enum's values, named ``ck_<table>_<column>``.

    Built from the enum so the database refuses exactly what the status machine does not know; a
    change to the enum needs a migration (tests/integration/test_migrations.py compares the two).
    """
    listed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        one_of("status", RunStatus),
        Index("ux_runs_tenant_idempotency_key", "tenant", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    task: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(128))
    # Limits, fixed at submission.
    max_subagents: Mapped[int] = mapped_column(Integer)
    max_tool_calls: Mapped[int] = mapped_column(Integer)
    max_steps_per_agent: Mapped[int] = mapped_column(Integer)
    max_wall_seconds: Mapped[float] = mapped_column(Float)
    max_depth: Mapped[int] = mapped_column(Integer)
    #: Subagents one turn may launch (loop guard); None: only max_subagents limits them.
    max_spawns_per_turn: Mapped[int | None] = mapped_column(Integer)
    #: Spend caps (``domain.budget``): picodollars and tokens (in + out); NULL: no cap.
    max_cost_pico: Mapped[int | None] = mapped_column(BigInteger)
    max_tokens: Mapped[int | None] = mapped_column(BigInteger)
    #: The run's own MCP servers (canonical mcpServers JSON, ${NAME} references unexpanded); NULL: none.
    mcp_config: Mapped[str | None] = mapped_column(Text)
    #: The provider of the run's model calls: a SWARM_PROVIDERS name (never a key); NULL: SWARM_LLM_*.
    provider: Mapped[str | None] = mapped_column(String(64))
    #: The run's own limits for that provider, lower than the account's; NULL: the account's.
    provider_concurrency: Mapped[int | None] = mapped_column(Integer)
    provider_rpm: Mapped[int | None] = mapped_column(Integer)
    provider_tpm: Mapped[int | None] = mapped_column(BigInteger)
    #: The worst cases of the model calls in flight, reserved before each call, settled by its commit.
    reserved_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Counters, updated atomically under the run row's lock.
    subagents: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_cached: Mapped[int] = mapped_column(BigInteger, default=0)
    #: USD spent, in picodollars (``domain.pricing``); NULL once any call's cost is unknown.
    cost_pico: Mapped[int | None] = mapped_column(BigInteger, default=0)
    critical_steps: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    deadline: Mapped[float | None] = mapped_column(Float)
    #: Wall seconds accumulated by earlier attempts of a resumed run.
    wall_before: Mapped[float] = mapped_column(Float, default=0.0)
    #: The submitter's Idempotency-Key: a second submission with it returns this run.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    #: Tools (names or fnmatch patterns) whose calls wait for a human decision (``domain.approvals``):
    #: the deployment's and the run's own, fixed at submission; NULL: none.
    approve_tools: Mapped[Any] = mapped_column(JSONType, nullable=True)
    #: Seconds an approval request waits before it counts as rejected; NULL: no expiry.
    approval_timeout: Mapped[float | None] = mapped_column(Float)
    #: A fork (``swarm fork``): the run it was copied from and the step of that run it goes on from.
    forked_from_run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    forked_at_step_id: Mapped[str | None] = mapped_column(String(32))
    #: The process that looks after the run (embedded runtimes: ``session.owner_id()``), and until
    #: when (database clock) its heartbeat renewed that; NULL: the cluster's (``domain/liveness.py``).
    owner: Mapped[str | None] = mapped_column(String(128))
    owner_until: Mapped[float | None] = mapped_column(Float)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (one_of("status", AgentStatus),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: The assign_task (or assign_tasks) tool step that launched this agent (None for the orchestrator).
    parent_step_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: Its item's place (0-based) in the assign_tasks call that launched it; None for assign_task.
    item: Mapped[int | None] = mapped_column(Integer)
    #: The parent's turn (orchestrator stage) in which it was launched: Critical Steps needs it.
    parent_turn: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    depth: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    #: LLM calls committed so far (this agent's "steps").
    steps: Mapped[int] = mapped_column(Integer, default=0)
    #: Next message sequence number; tool results get theirs reserved when the turn is committed.
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: Tool calls of the current turn still without a result (fan-in counter).
    pending_tools: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_cached: Mapped[int] = mapped_column(BigInteger, default=0)
    #: USD spent, in picodollars; NULL once any of its calls' cost is unknown.
    cost_pico: Mapped[int | None] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class AgentDef(Base):
    """A subagent type made by ``create_subagent(name, system_prompt)``, reusable within its run."""

    __tablename__ = "agent_defs"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    system_prompt: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("agent_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    #: A string, or a list of OpenAI content parts (text, image_url).
    content: Mapped[Any] = mapped_column(JSONType, nullable=True)
    reasoning_content: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[Any] = mapped_column(JSONType, nullable=True)
    tool_call_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    #: A tool result's images for the model (swarm/domain/images.py: name, mime, size, base64 of
    #: the downscaled bytes), stored once so every rebuild of the conversation is byte-identical.
    images: Mapped[Any] = mapped_column(JSONType, nullable=True)


class Step(Base):
    """One LLM call or one tool call: the unit of durable work."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("agent_id", "kind", "turn", "idx"),
        Index("ix_steps_open", "status", "lease_until"),
        Index("ix_steps_run_status", "run_id", "status"),
        one_of("status", StepStatus),
        one_of("kind", StepKind),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(24))
    #: The agent's turn: LLM step n is turn n; its tool calls are turn n with idx 0..k-1.
    turn: Mapped[int] = mapped_column(Integer)
    idx: Mapped[int] = mapped_column(Integer, default=0)
    tool_name: Mapped[str | None] = mapped_column(String(128))
    tool_call_id: Mapped[str | None] = mapped_column(String(128))
    arguments: Mapped[str | None] = mapped_column(Text)
    #: A tool call granted a run: ``domain.guards.call_key`` of its tool and canonical arguments, so
    #: the repeat guard counts an agent's identical calls (NULL for LLM steps and refused calls).
    call_key: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str | None] = mapped_column(Text)
    is_error: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Sequence number reserved for this tool call's result message.
    msg_seq: Mapped[int | None] = mapped_column(Integer)
    child_agent_id: Mapped[str | None] = mapped_column(String(32))
    #: An assign_tasks step: its subagents that have not reported yet (fan-in of a waiting step).
    pending_children: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: Fencing token: bumped on every claim; a commit must present the current one.
    fence: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    lease_until: Mapped[float | None] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    #: An LLM step's usage beyond in/out, and its cost in picodollars (NULL: unknown, or a tool step).
    tokens_cached: Mapped[int | None] = mapped_column(Integer)
    tokens_reasoning: Mapped[int | None] = mapped_column(Integer)
    cost_pico: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    #: Appended to the tool result for the model, e.g. "5 of 1500 tool calls left".
    note: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """Append-only log that live views follow (id is the SSE event id)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[float] = mapped_column(Float)
    type: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(32))
    step_id: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)


class Artifact(Base):
    """A file of a run's workspace, kept in the database so any worker on any machine sees it."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(512))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)
    #: The tool step that last wrote the file (None: an attachment, or saved before 0014).
    step_id: Mapped[str | None] = mapped_column(String(32))


class ApiKey(Base):
    """An API key of the REST server. Only the key's sha256 is stored: the key itself is shown
    once, at creation. ``prefix`` is a non-secret handle for listing and revoking."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(128))
    #: An admin key sees every tenant's runs (operators, the dashboard of a single-team install).
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    #: None: the key never expires.
    expires_at: Mapped[float | None] = mapped_column(Float)
    #: When a request last authenticated with it (kept to the minute: not a write per request).
    last_used_at: Mapped[float | None] = mapped_column(Float)


class ClusterIdentity(Base):
    """This deployment's id: one row, written by the first process that asks for it. Every step
    message carries it, and a worker refuses a message whose id is not its database's."""

    __tablename__ = "cluster_identity"
    __table_args__ = (CheckConstraint("singleton = 1", name="singleton"),)

    singleton: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cluster_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)


class ClusterLease(Base):
    """A cluster-wide role held by one process at a time (the sweeper): whoever holds an unexpired
    lease has it; a holder that stops renewing loses it when ``expires_at`` (database clock) passes."""

    __tablename__ = "cluster_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    acquired_at: Mapped[float | None] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Approval(Base):
    """A human decision on one tool call (its step): requested when the model turn that made the
    call commits, decided once (``decision`` goes from NULL to approved or rejected, never back)."""

    __tablename__ = "approvals"
    __table_args__ = (CheckConstraint("decision IN ('approved', 'rejected')", name="decision"),)

    step_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(128))
    #: The call's arguments, cut to ``domain.approvals.PREVIEW_CHARS`` (the step keeps them whole).
    arguments: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[float] = mapped_column(Float)
    #: Database clock; NULL: the request never expires.
    expires_at: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str | None] = mapped_column(String(16))
    #: An approval's note, or why it was rejected (the model reads it).
    note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[float | None] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(128))


class MetricTotal(Base):
    """One figure of /metrics summed over every finished run's steps (``store/step_stats.py``),
    e.g. ``steps:llm:succeeded`` or ``duration:tool:le:0.5``."""

    __tablename__ = "metric_totals"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


class TenantSpend(Base):
    """What a tenant's model calls spent, and reserved while in flight, on one UTC day: the
    daily USD cap (SWARM_TENANT_MAX_USD_PER_DAY) is kept against this row."""

    __tablename__ = "tenant_spend"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  #: YYYY-MM-DD, UTC
    spent_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_pico: Mapped[int] = mapped_column(BigInteger, default=0)


# Core tables for the hot paths: plain-table statements skip the ORM layer's per-statement work
# (the store builds thousands of small statements per second).
RUNS: Table = Run.__table__  # type: ignore[assignment]
METRIC_TOTALS: Table = MetricTotal.__table__  # type: ignore[assignment]
AGENTS: Table = Agent.__table__  # type: ignore[assignment]
DEFS: Table = AgentDef.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
STEPS: Table = Step.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
ARTIFACTS: Table = Artifact.__table__  # type: ignore[assignment]
CLUSTER_IDENTITY: Table = ClusterIdentity.__table__  # type: ignore[assignment]
CLUSTER_LEASES: Table = ClusterLease.__table__  # type: ignore[assignment]
TENANT_SPEND: Table = TenantSpend.__table__  # type: ignore[assignment]
APPROVALS: Table = Approval.__table__  # type: ignore[assignment]
