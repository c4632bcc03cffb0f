"""Request and response models: the OpenAPI contract of ``/v1``.

Bounds here are the database's (column sizes, integer ranges): an input the database would
reject is refused as a 422 naming the field, never left to fail as a 500 deep in a query.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from swarm.constants import TOOL_PATTERN
from swarm.domain import run_limits
from swarm.domain.status import RunStatus
from swarm.exceptions import InputError
from swarm.store.types import ApprovalInfo, Attachment, RunSummary

#: Run ids are uuid4 hex; checking the shape up front keeps junk out of queries.
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL (the schema's pattern says so too), and UTF-8 cannot
    encode lone surrogates (JSON can carry them; JSON Schema cannot express the rule)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


def _json_number(value: Any) -> Any:
    """JSON numbers only: lax mode would read `false` as 0 and "3" as 3."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")  # noqa: TRY004 - pydantic reports ValueError as a 422, TypeError not
    return value


NO_NUL = r"^[^\x00]*$"
#: Standard base64 with padding, as ``base64.b64encode`` writes it.
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: A plain file name: no directories, not "." or "..".
FILE_NAME = r"^(?!\.\.?$)[^/\\\x00]+$"

# Validators go AFTER the Field constraints in each Annotated: the other way round, pydantic
# cannot put the constraints into the JSON schema (and schemathesis would rightly complain).
STORABLE = AfterValidator(_storable)
NUMBER = BeforeValidator(_json_number)


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=FILE_NAME), STORABLE] = Field(
        description="File name (no directories), e.g. `chart.png`."
    )
    mime: Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL), STORABLE] = Field(
        "application/octet-stream", description="MIME type; `image/*` attachments reach the model as images."
    )
    data: str = Field(
        max_length=(MAX_ATTACHMENT_BYTES * 4) // 3 + 4,
        pattern=BASE64,
        description="The file's bytes, base64 (standard alphabet, padded).",
    )

    def to_attachment(self) -> Attachment:
        return Attachment(self.name, base64.b64decode(self.data), self.mime)


def _within(name: str) -> AfterValidator:
    """The limit's bound from the table the CLI uses too (``domain/run_limits.py``): the same
    values refused with the same message."""
    bound = run_limits.BOUNDS[name]

    def check(value: Any) -> Any:
        try:
            return bound.check(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(check)


def _bounds(name: str) -> Any:
    """The bound as the JSON schema's keywords (the validator, not pydantic, enforces it)."""
    return Field(json_schema_extra=run_limits.BOUNDS[name].json_schema())


# Validators go after the schema's keywords; NUMBER (JSON numbers only) before the bound.
MaxSubagents = Annotated[int, _bounds("max_subagents"), NUMBER, _within("max_subagents")]
MaxToolCalls = Annotated[int, _bounds("max_tool_calls"), NUMBER, _within("max_tool_calls")]
MaxSteps = Annotated[int, _bounds("max_steps_per_agent"), NUMBER, _within("max_steps_per_agent")]
MaxWall = Annotated[float, _bounds("max_wall_seconds"), NUMBER, _within("max_wall_seconds")]
MaxDepth = Annotated[int, _bounds("max_depth"), NUMBER, _within("max_depth")]
MaxSpawns = Annotated[int, _bounds("max_spawns_per_turn"), NUMBER, _within("max_spawns_per_turn")]
MaxUsd = Annotated[float, _bounds("max_usd"), NUMBER, _within("max_usd")]
MaxTokens = Annotated[int, _bounds("max_tokens"), NUMBER, _within("max_tokens")]


def _task(value: str) -> str:
    try:
        return run_limits.check_task(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


class Limits(BaseModel):
    """Per-run limits; omitted ones take the server's defaults (SWARM_MAX_*). Bounds and messages:
    ``domain/run_limits.py``, shared with the CLI."""

    model_config = ConfigDict(extra="forbid")

    max_subagents: MaxSubagents | None = None
    max_tool_calls: MaxToolCalls | None = None
    max_steps_per_agent: MaxSteps | None = None
    max_wall_seconds: MaxWall | None = None
    max_depth: MaxDepth | None = None
    max_spawns_per_turn: MaxSpawns | None = Field(
        None,
        description="Loop guard: subagents one turn may launch; the turn's further assign_task calls get a "
        "tool error asking to assign them in a later turn. Omitted: no cap beyond max_subagents.",
    )
    max_usd: MaxUsd | None = Field(
        None, description="USD cap of the run's model calls (default SWARM_MAX_USD; none: no cap)."
    )
    max_tokens: MaxTokens | None = Field(
        None, description="Cap of the run's model tokens, in + out (default SWARM_MAX_TOKENS; none: no cap)."
    )


class ResumeIn(BaseModel):
    """New spend caps for the resumed run (raise them to continue a run its budget stopped)."""

    model_config = ConfigDict(extra="forbid")

    max_usd: MaxUsd | None = None
    max_tokens: MaxTokens | None = None


_McpText = Annotated[str, Field(max_length=4096, pattern=NO_NUL)]
_McpSeconds = Annotated[float, Field(gt=0, le=3600), NUMBER]
_McpName = Annotated[str, Field(min_length=1, max_length=32)]
_McpVars = dict[Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)], _McpText]


class _McpCommon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout: _McpSeconds | None = Field(None, description="Seconds one call may take (default 60).")
    tools_ttl: _McpSeconds | None = None
    agents: Literal["orchestrator", "subagents", "both"] | None = None
    disabled: StrictBool | None = None


class McpStdioIn(_McpCommon):
    """A stdio server (no network: only the deployment's servers may have it)."""

    command: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
    args: list[_McpText] = Field(default_factory=list, max_length=256)
    env: _McpVars = Field(default_factory=dict)
    cwd: _McpText | None = None


class McpHttpIn(_McpCommon):
    """A streamable HTTP server."""

    url: Annotated[str, Field(max_length=4096, pattern=r"^https?://[^\x00]*$")]
    headers: _McpVars = Field(default_factory=dict)


class McpConfigIn(BaseModel):
    """A run's own MCP servers (docs/mcp.md)."""

    model_config = ConfigDict(extra="forbid")

    mcpServers: dict[_McpName, McpStdioIn | McpHttpIn] = Field(min_length=1, max_length=32)


class ForkIn(BaseModel):
    """Where to fork a run, and optionally the message its agent reads there instead."""

    model_config = ConfigDict(extra="forbid")

    at_step: Annotated[
        str,
        Field(
            pattern=r"^[0-9a-f]{1,32}$",
            description="The step the fork goes on from (its id, or a unique prefix of it): its history "
            "before that step is carried over, and that step runs again in the fork.",
        ),
    ]
    message: Annotated[
        str | None,
        Field(
            max_length=1_000_000,
            description="Replaces the last message the step's agent reads before that model call "
            "(an LLM step only): the task, a tool result, a subagent's prompt.",
        ),
    ] = None


class RunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "task": "Compare the 10 largest EU economies' 2025 growth. #sim agents=10 tools=3 tool=echo",
                    "limits": {"max_subagents": 20, "max_tool_calls": 200},
                }
            ]
        },
    )

    task: Annotated[
        str,
        Field(json_schema_extra={"minLength": 1, "maxLength": run_limits.MAX_TASK_CHARS}, pattern=NO_NUL),
        STORABLE,
        AfterValidator(_task),
    ] = Field(description="What the swarm should do.")
    model: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL), STORABLE] | None = Field(
        None, description="Model name (default: SWARM_MODEL)."
    )
    limits: Limits = Field(default_factory=Limits)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=32)
    approve_tools: list[Annotated[str, Field(pattern=f"^{TOOL_PATTERN}$")]] = Field(
        default_factory=list,
        max_length=64,
        description="Tools (names or fnmatch patterns like `mcp__github__*`) whose calls wait for a human "
        "decision before they run, on top of the server's SWARM_APPROVE_TOOLS (which a run cannot switch off).",
    )
    mcp: McpConfigIn | None = Field(
        None,
        description='The run\'s own MCP servers, as `{"mcpServers": {...}}` (docs/mcp.md): their tools are offered '
        "to the run's agents as mcp__<server>__<tool>, next to the deployment's. Stored with the run, so a "
        "secret-looking env value or credential header must be a ${NAME} reference to a variable listed in "
        "the server's SWARM_MCP_RUN_VARS; a literal one is refused (422).",
    )
    provider: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = Field(
        None,
        description="The named provider (the server's SWARM_PROVIDERS) the run's model calls go to; default: the "
        "server's SWARM_LLM_* provider. An unknown name is refused (422) with the known ones listed.",
    )
    provider_concurrency: int | None = Field(None, ge=1, description="The run's own cap on calls in flight (lower).")
    provider_rpm: int | None = Field(None, ge=1, description="The run's own requests per minute (lower).")
    provider_tpm: int | None = Field(None, ge=1, description="The run's own tokens per minute (lower).")


class RunAccepted(BaseModel):
    id: str
    status: str
    links: dict[str, str] = Field(description="Where to follow the run: summary, agents, events, export.")


class RunList(BaseModel):
    runs: list[RunSummary]
    limit: int
    offset: int
    has_more: bool = Field(description="True if another page follows (ask again with offset + limit).")


class AgentOut(BaseModel):
    id: str
    parent_id: str | None
    name: str
    depth: int
    status: str
    reason: str | None
    steps: int = Field(description="LLM calls this agent committed.")
    tool_calls: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int = Field(0, description="Input tokens served from the provider's prefix cache.")
    cost_usd: float | None = Field(None, description="USD this agent's model calls cost; null: unknown (no price).")
    parent_turn: int | None = Field(description="The parent's turn (stage) that launched this agent.")
    created_at: float
    finished_at: float | None
    result: str | None = Field(description="The agent's final answer (first 2,000 characters).")


class AgentTree(BaseModel):
    run_id: str
    agents: list[AgentOut] = Field(description="Parents before children.")


class CancelOut(BaseModel):
    id: str
    status: RunStatus
    changed: bool = Field(description="False if the run was not running (cancelling is idempotent).")


class DeletedOut(BaseModel):
    runs: list[str] = Field(description="The runs deleted.")
    rows: dict[str, int] = Field(description="Rows deleted, per table.")
    total_rows: int
    file_bytes: int = Field(description="Bytes of the runs' workspace files freed.")
    data_bytes: int = Field(
        0, description="Bytes of the deleted rows' data (PostgreSQL: as stored; SQLite: an estimate)."
    )


class ResumeOut(BaseModel):
    id: str
    status: RunStatus
    dispatched: int = Field(
        description="Open steps of the run handed to workers right after the resume; "
        "committed steps are never repeated."
    )


class TimelineStep(BaseModel):
    id: str
    agent_id: str
    kind: str
    status: str
    turn: int
    idx: int
    tool_name: str | None
    started_at: float | None
    finished_at: float | None
    attempt: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int | None = Field(None, description="An LLM call's cached input tokens.")
    cost_usd: float | None = Field(None, description="An LLM call's cost; null for tool calls and unpriced models.")
    is_error: bool


class Timeline(BaseModel):
    run_id: str
    status: RunStatus
    now: float = Field(description="Server time, so a client can draw still-running steps up to now.")
    created_at: float
    finished_at: float | None
    agents: list[AgentOut]
    steps: list[TimelineStep]


class ApprovalList(BaseModel):
    approvals: list[ApprovalInfo]


#: Some text that is not only blank (and has no NUL): a rejection's reason, which the model reads.
REASON = r"^[^\x00]*[^\x00\s][^\x00]*$"


class ApproveIn(BaseModel):
    """Run the tool call."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"decision": "approve"}]})

    decision: Literal["approve"]
    note: Annotated[str, Field(max_length=10_000, pattern=NO_NUL), STORABLE] | None = Field(
        None, description="Kept with the decision."
    )


class RejectIn(BaseModel):
    """Do not run the tool call: the model gets a tool error carrying ``note``."""

    model_config = ConfigDict(
        extra="forbid",
        regex_engine="python-re",
        json_schema_extra={"examples": [{"decision": "reject", "note": "no network access from this run"}]},
    )

    decision: Literal["reject"]
    note: Annotated[str, Field(min_length=1, max_length=10_000, pattern=REASON), STORABLE] = Field(
        description="Why: the model is told it as the tool call's error."
    )


#: A human decision on a tool call awaiting approval.
DecisionIn = Annotated[ApproveIn | RejectIn, Field(discriminator="decision")]


class ServerInfo(BaseModel):
    version: str
    mode: str = Field(description="`embedded` (in-process workers) or `cluster` (Celery).")
    tenant: str
    admin: bool
    key_prefix: str
    flower_url: str | None
    python_isolation: str = Field(
        description="How python tool code is isolated: `bwrap`, `executor` (a separate service) or `off` (unsafe)."
    )
    python_isolation_available: bool = Field(description="False: python tool calls fail on this server.")


class Health(BaseModel):
    status: str


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class Ready(BaseModel):
    status: str = Field(description="`ready` or `unavailable`.")
    checks: dict[str, Check]


class FileOut(BaseModel):
    path: str = Field(description="Relative to the run's workspace, with '/' between parts.")
    size: int = Field(description="Bytes.")
    sha256: str
    step_id: str | None = Field(description="The tool step that last wrote it; null for an attachment.")
    updated_at: float = Field(description="When it was last saved (Unix seconds).")


class FileList(BaseModel):
    run_id: str
    files: list[FileOut] = Field(description="Every file of the run's workspace, by path.")
