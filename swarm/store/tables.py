"""The schema, as SQLAlchemy Core tables: what every statement of the store is built on.
Every table is append-mostly and grows linearly with the work done:
one row per message, per step (LLM call or tool call), per event — never a re-stored conversation.

Times are Unix epoch seconds (float). Lease and readiness times are set from the database's clock
(see :func:`swarm.store.db.db_now`) so that workers on machines with skewed clocks agree.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
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

#: The ORM models (``models.py``) map onto these tables; reads need only Core (a command that
#: just reads, like `swarm ls`, never imports ``sqlalchemy.orm``: docs/benchmarks.md).
metadata = MetaData(naming_convention=NAMING)


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK that *column* holds one of the enum's values, named ``ck_<table>_<column>``.

    Built from the enum so the database refuses exactly what the status machine does not know; a
    change to the enum needs a migration (tests/integration/test_migrations.py compares the two).
    """
    listed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


RUNS = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), index=True),
    Column("task", Text, nullable=False),
    Column("status", String(16), index=True, nullable=False),
    Column("reason", Text),
    Column("result", Text),
    Column("model", String(128), nullable=False),
    # Limits, fixed at submission.
    Column("max_subagents", Integer, nullable=False),
    Column("max_tool_calls", Integer, nullable=False),
    Column("max_steps_per_agent", Integer, nullable=False),
    Column("max_wall_seconds", Float, nullable=False),
    Column("max_depth", Integer, nullable=False),
    #: Subagents one turn may launch (loop guard); None: only max_subagents limits them.
    Column("max_spawns_per_turn", Integer),
    #: Spend caps (``domain.budget``): picodollars and tokens (in + out); NULL: no cap.
    Column("max_cost_pico", BigInteger),
    Column("max_tokens", BigInteger),
    #: The run's own MCP servers (canonical mcpServers JSON, ${NAME} references unexpanded); NULL: none.
    Column("mcp_config", Text),
    #: The provider of the run's model calls: a SWARM_PROVIDERS name (never a key); NULL: SWARM_LLM_*.
    Column("provider", String(64)),
    #: The run's own limits for that provider, lower than the account's; NULL: the account's.
    Column("provider_concurrency", Integer),
    Column("provider_rpm", Integer),
    Column("provider_tpm", BigInteger),
    #: The worst cases of the model calls in flight, reserved before each call, settled by its commit.
    Column("reserved_pico", BigInteger, default=0, nullable=False),
    Column("reserved_tokens", BigInteger, default=0, nullable=False),
    # Counters, updated atomically under the run row's lock.
    Column("subagents", Integer, default=0, nullable=False),
    Column("tool_calls", Integer, default=0, nullable=False),
    Column("llm_calls", Integer, default=0, nullable=False),
    Column("tokens_in", BigInteger, default=0, nullable=False),
    Column("tokens_out", BigInteger, default=0, nullable=False),
    Column("tokens_cached", BigInteger, default=0, nullable=False),
    #: USD spent, in picodollars (``domain.pricing``); NULL once any call's cost is unknown.
    Column("cost_pico", BigInteger, default=0),
    Column("critical_steps", Integer),
    Column("total_steps", Integer),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("deadline", Float),
    #: Wall seconds accumulated by earlier attempts of a resumed run.
    Column("wall_before", Float, default=0.0, nullable=False),
    #: The submitter's Idempotency-Key: a second submission with it returns this run.
    Column("idempotency_key", String(255)),
    #: Tools (names or fnmatch patterns) whose calls wait for a human decision (``domain.approvals``):
    #: the deployment's and the run's own, fixed at submission; NULL: none.
    Column("approve_tools", JSONType, nullable=True),
    #: Seconds an approval request waits before it counts as rejected; NULL: no expiry.
    Column("approval_timeout", Float),
    #: A fork (``swarm fork``): the run it was copied from and the step of that run it goes on from.
    Column("forked_from_run_id", String(32), index=True),
    Column("forked_at_step_id", String(32)),
    #: The process that looks after the run (embedded runtimes: ``session.owner_id()``), and until
    #: when (database clock) its heartbeat renewed that; NULL: the cluster's (``domain/liveness.py``).
    Column("owner", String(128)),
    Column("owner_until", Float),
    one_of("status", RunStatus),
    Index("ux_runs_tenant_idempotency_key", "tenant", "idempotency_key", unique=True),
)


AGENTS = Table(
    "agents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("parent_id", String(32), index=True),
    #: The assign_task (or assign_tasks) tool step that launched this agent (None for the orchestrator).
    Column("parent_step_id", String(32), index=True),
    #: Its item's place (0-based) in the assign_tasks call that launched it; None for assign_task.
    Column("item", Integer),
    #: The parent's turn (orchestrator stage) in which it was launched: Critical Steps needs it.
    Column("parent_turn", Integer),
    Column("name", String(128), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("result", Text),
    #: LLM calls committed so far (this agent's "steps").
    Column("steps", Integer, default=0, nullable=False),
    #: Next message sequence number; tool results get theirs reserved when the turn is committed.
    Column("next_seq", Integer, default=0, nullable=False),
    #: Tool calls of the current turn still without a result (fan-in counter).
    Column("pending_tools", Integer, default=0, nullable=False),
    Column("tokens_in", BigInteger, default=0, nullable=False),
    Column("tokens_out", BigInteger, default=0, nullable=False),
    Column("tokens_cached", BigInteger, default=0, nullable=False),
    #: USD spent, in picodollars; NULL once any of its calls' cost is unknown.
    Column("cost_pico", BigInteger, default=0),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    one_of("status", AgentStatus),
)


#: A subagent type made by ``create_subagent(name, system_prompt)``, reusable within its run.
DEFS = Table(
    "agent_defs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("system_prompt", Text, nullable=False),
    Column("created_by", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("run_id", "name"),
)


MESSAGES = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("agent_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    #: A string, or a list of OpenAI content parts (text, image_url).
    Column("content", JSONType, nullable=True),
    Column("reasoning_content", Text),
    Column("tool_calls", JSONType, nullable=True),
    Column("tool_call_id", String(128)),
    Column("created_at", Float, nullable=False),
    #: A tool result's images for the model (swarm/domain/images.py: name, mime, size, base64 of
    #: the downscaled bytes), stored once so every rebuild of the conversation is byte-identical.
    Column("images", JSONType, nullable=True),
    UniqueConstraint("agent_id", "seq"),
)


#: One LLM call or one tool call: the unit of durable work.
STEPS = Table(
    "steps",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("agent_id", String(32), index=True, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("status", String(24), nullable=False),
    #: The agent's turn: LLM step n is turn n; its tool calls are turn n with idx 0..k-1.
    Column("turn", Integer, nullable=False),
    Column("idx", Integer, default=0, nullable=False),
    Column("tool_name", String(128)),
    Column("tool_call_id", String(128)),
    Column("arguments", Text),
    #: A tool call granted a run: ``domain.guards.call_key`` of its tool and canonical arguments, so
    #: the repeat guard counts an agent's identical calls (NULL for LLM steps and refused calls).
    Column("call_key", String(64)),
    Column("result", Text),
    Column("is_error", Boolean, default=False, nullable=False),
    #: Sequence number reserved for this tool call's result message.
    Column("msg_seq", Integer),
    Column("child_agent_id", String(32)),
    #: An assign_tasks step: its subagents that have not reported yet (fan-in of a waiting step).
    Column("pending_children", Integer),
    Column("attempt", Integer, default=0, nullable=False),
    #: Fencing token: bumped on every claim; a commit must present the current one.
    Column("fence", Integer, default=0, nullable=False),
    Column("owner", String(128), index=True),
    Column("lease_until", Float),
    Column("ready_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("tokens_in", Integer, default=0, nullable=False),
    Column("tokens_out", Integer, default=0, nullable=False),
    #: An LLM step's usage beyond in/out, and its cost in picodollars (NULL: unknown, or a tool step).
    Column("tokens_cached", Integer),
    Column("tokens_reasoning", Integer),
    Column("cost_pico", BigInteger),
    Column("error", Text),
    #: Appended to the tool result for the model, e.g. "5 of 1500 tool calls left".
    Column("note", Text),
    UniqueConstraint("agent_id", "kind", "turn", "idx"),
    Index("ix_steps_open", "status", "lease_until"),
    Index("ix_steps_run_status", "run_id", "status"),
    one_of("status", StepStatus),
    one_of("kind", StepKind),
)


#: Append-only log that live views follow (id is the SSE event id).
EVENTS = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("ts", Float, nullable=False),
    Column("type", String(32), nullable=False),
    Column("agent_id", String(32)),
    Column("step_id", String(32)),
    Column("data", JSONType, nullable=True),
    Index("ix_events_run_id_id", "run_id", "id"),
)


#: A file of a run's workspace, kept in the database so any worker on any machine sees it.
ARTIFACTS = Table(
    "artifacts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("path", String(512), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    #: The tool step that last wrote the file (None: an attachment, or saved before 0014).
    Column("step_id", String(32)),
    UniqueConstraint("run_id", "path"),
)


#: An API key of the REST server. Only the key's sha256 is stored: the key itself is shown
#: once, at creation. ``prefix`` is a non-secret handle for listing and revoking.
API_KEYS = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("prefix", String(16), unique=True, nullable=False),
    Column("key_hash", String(64), unique=True, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128)),
    #: An admin key sees every tenant's runs (operators, the dashboard of a single-team install).
    Column("admin", Boolean, default=False, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    #: None: the key never expires.
    Column("expires_at", Float),
    #: When a request last authenticated with it (kept to the minute: not a write per request).
    Column("last_used_at", Float),
)


#: This deployment's id: one row, written by the first process that asks for it. Every step
#: message carries it, and a worker refuses a message whose id is not its database's.
CLUSTER_IDENTITY = Table(
    "cluster_identity",
    metadata,
    Column("singleton", Integer, primary_key=True, autoincrement=False),
    Column("cluster_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    CheckConstraint("singleton = 1", name="singleton"),
)


#: A cluster-wide role held by one process at a time (the sweeper): whoever holds an unexpired
#: lease has it; a holder that stops renewing loses it when ``expires_at`` (database clock) passes.
CLUSTER_LEASES = Table(
    "cluster_leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(128)),
    Column("acquired_at", Float),
    Column("expires_at", Float, nullable=False),
)


#: A human decision on one tool call (its step): requested when the model turn that made the
#: call commits, decided once (``decision`` goes from NULL to approved or rejected, never back).
APPROVALS = Table(
    "approvals",
    metadata,
    Column("step_id", String(32), primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False),
    Column("agent_id", String(32), nullable=False),
    Column("tool", String(128), nullable=False),
    #: The call's arguments, cut to ``domain.approvals.PREVIEW_CHARS`` (the step keeps them whole).
    Column("arguments", Text),
    Column("requested_at", Float, nullable=False),
    #: Database clock; NULL: the request never expires.
    Column("expires_at", Float),
    Column("decision", String(16)),
    #: An approval's note, or why it was rejected (the model reads it).
    Column("note", Text),
    Column("decided_at", Float),
    Column("decided_by", String(128)),
    CheckConstraint("decision IN ('approved', 'rejected')", name="decision"),
)


#: One figure of /metrics summed over every finished run's steps (``store/step_stats.py``),
#: e.g. ``steps:llm:succeeded`` or ``duration:tool:le:0.5``.
METRIC_TOTALS = Table(
    "metric_totals",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Float, default=0.0, nullable=False),
)


#: What a tenant's model calls spent, and reserved while in flight, on one UTC day: the
#: daily USD cap (SWARM_TENANT_MAX_USD_PER_DAY) is kept against this row.
TENANT_SPEND = Table(
    "tenant_spend",
    metadata,
    Column("tenant", String(64), primary_key=True),
    #: YYYY-MM-DD, UTC
    Column("day", String(10), primary_key=True),
    Column("spent_pico", BigInteger, default=0, nullable=False),
    Column("reserved_pico", BigInteger, default=0, nullable=False),
)
