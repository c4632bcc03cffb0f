"""Plain records the store hands out. Serialisable; no ORM objects escape the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from swarm.domain.status import RunStatus, StepKind


@dataclass(frozen=True)
class StepRef:
    """Enough to dispatch a step (and to label it in Flower)."""

    step_id: str
    run_id: str
    agent_id: str
    kind: StepKind
    tool_name: str | None = None


@dataclass(frozen=True)
class AgentLimits:
    """What an LLM step needs of its agent and its run besides the conversation."""

    name: str
    depth: int
    steps: int
    max_steps: int
    max_depth: int
    model: str
    #: The run's spend caps (picodollars, tokens); None: no cap, and no reservation needed.
    max_cost_pico: int | None = None
    max_tokens: int | None = None
    #: The run's tenant: its model calls also count against the tenant's daily cap, if one is set.
    tenant: str | None = None
    #: The run's own MCP servers (docs/mcp.md), if it has any.
    mcp_config: str | None = None
    #: The run's provider (a SWARM_PROVIDERS name; None: the SWARM_LLM_* one) and its own lower
    #: limits for it: concurrency, rpm, tpm (None: the account's).
    provider: str | None = None
    provider_limits: tuple[int | None, int | None, int | None] = (None, None, None)

    @property
    def budgeted(self) -> bool:
        return self.max_cost_pico is not None or self.max_tokens is not None


@dataclass(frozen=True)
class Claim:
    """Proof that this worker holds a step: its commit must present ``fence``."""

    step_id: str
    run_id: str
    agent_id: str
    kind: StepKind
    fence: int
    attempt: int
    turn: int
    idx: int
    owner: str
    tool_name: str | None
    tool_call_id: str | None
    arguments: str | None
    #: Whether the run had workspace files when the step was claimed (no need to read them if not).
    run_has_files: bool = True
    #: A tool step's place in the conversation, and the budget note its result carries.
    msg_seq: int | None = None
    note: str | None = None
    #: An LLM step's agent and run limits, read with the claim (None: read them separately).
    agent: AgentLimits | None = None

    def ref(self) -> StepRef:
        return StepRef(self.step_id, self.run_id, self.agent_id, self.kind, self.tool_name)


@dataclass(frozen=True)
class ArtifactInfo:
    """A file of a run's workspace, without its bytes (those are read one file at a time)."""

    path: str
    sha256: str
    size: int
    updated_at: float
    #: The tool step that last wrote it (None: an attachment, or a file saved before it was recorded).
    step_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "step_id": self.step_id,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes
    mime: str


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start a run."""

    task: str
    model: str
    max_subagents: int
    max_tool_calls: int
    max_steps_per_agent: int
    max_wall_seconds: float
    max_depth: int
    #: Subagents one turn may launch; None: no cap beyond max_subagents.
    max_spawns_per_turn: int | None = None
    tenant: str | None = None
    attachments: tuple[Attachment, ...] = ()
    #: A second submission with the same key (and tenant) returns the first one's run.
    idempotency_key: str | None = None
    #: Spend caps: picodollars and tokens (in + out); None: no cap.
    max_cost_pico: int | None = None
    max_tokens: int | None = None
    #: Tools (names, fnmatch patterns) whose calls wait for a human decision (``domain.approvals``).
    approve_tools: tuple[str, ...] = ()
    #: Seconds an approval request waits before it counts as rejected; None: no expiry.
    approval_timeout: float | None = None
    #: The run's own MCP servers: canonical mcpServers JSON holding no secrets (checked at submit).
    mcp_config: str | None = None
    #: The provider the run's model calls go to (a name, never a key) and its own lower limits.
    provider: str | None = None
    provider_concurrency: int | None = None
    provider_rpm: int | None = None
    provider_tpm: int | None = None


@dataclass(frozen=True)
class AgentContext:
    """What an LLM step needs to build its request."""

    run_id: str
    agent_id: str
    agent: AgentLimits
    messages: list[dict[str, Any]] = field(default_factory=list)


class RunSummary(BaseModel):
    """A run's summary — one record for the store, the REST API's response and the client that reads
    it back (the same fields as `swarm show --json`). Critical steps are live while the run runs."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: RunStatus
    reason: str | None
    task: str
    model: str
    subagents: int
    llm_calls: int
    tool_calls: int
    critical_steps: int
    total_steps: int
    wall_seconds: float
    tokens_in: int
    tokens_out: int
    #: Input tokens served from the provider's prefix cache (part of ``tokens_in``).
    tokens_cached: int = 0
    #: USD spent on model calls; None when a call's model has no price (unknown, never 0).
    cost_usd: float | None = None
    result: str | None
    created_at: float
    finished_at: float | None
    max_subagents: int
    max_tool_calls: int
    tenant: str | None = None
    #: The run's spend caps; None: no cap.
    max_usd: float | None = None
    max_tokens: int | None = None
    #: Tools (names, fnmatch patterns) whose calls wait for a human decision; empty: none.
    approve_tools: list[str] = Field(default_factory=list)
    #: A fork: the run it was forked from and the step of that run it goes on from.
    forked_from_run_id: str | None = None
    forked_at_step_id: str | None = None
    #: The runs forked from this one (filled by a single run's summary, not by listings).
    forks: list[str] = []
    #: What to show: the status, or ``interrupted`` for a running run nothing works on any more
    #: (its process died; ``domain/liveness.py``), with ``hint`` saying what to do. Derived on read.
    state: str | None = None
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ApprovalInfo(BaseModel):
    """A tool call's approval request and its decision — one record for the store, the REST API's
    response and the client that reads it back (``swarm approvals --json``)."""

    model_config = ConfigDict(frozen=True)

    step_id: str
    run_id: str
    agent_id: str
    #: The agent's name (orchestrator, or the subagent's).
    agent: str | None = None
    tool: str
    #: The call's arguments (JSON text), cut to ``domain.approvals.PREVIEW_CHARS``.
    arguments: str | None
    requested_at: float
    #: When an undecided request counts as rejected ("approval expired"); None: never.
    expires_at: float | None
    #: ``pending``, ``approved`` or ``rejected``.
    status: str
    note: str | None = None
    decided_at: float | None = None
    decided_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
