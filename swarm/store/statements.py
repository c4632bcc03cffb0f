"""The hot-path statements, built once.

Every step runs a handful of these; building a SQLAlchemy statement (and its cache key) costs more
Python time than executing it on SQLite, so the ones run per step are constructed at import and
executed with bound parameters. Parameter names carry a ``b_`` prefix because SQLAlchemy reserves
bare column names for the VALUES/SET clause.

Every status condition of a move is :func:`guard` of a named transition of
``swarm.domain.status``: the SQL allows exactly the moves the status machine declares.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)

from swarm.domain.status import (
    STEP_CLAIM,
    STEP_DELIVER,
    STEP_SUCCEED,
    STEP_TAKE_OVER,
    AgentStatus,
    RunStatus,
    StepKind,
    StepStatus,
    Transition,
)
from swarm.store.db import db_now
from swarm.store.tables import AGENTS, ARTIFACTS, EVENTS, MESSAGES, RUNS, STEPS, TENANT_SPEND

S, A, R = STEPS.c, AGENTS.c, RUNS.c


def guard(column: Any, transition: Transition[Any]) -> ColumnElement[bool]:
    """The WHERE condition under which ``column`` (a status column) may make ``transition``:
    ``status = 'x'`` for one source status (the SQL the hot path always ran), else
    ``status IN ('x', 'y')`` in a stable order."""
    sources = sorted(transition.sources)
    if len(sources) == 1:
        return column == sources[0]  # type: ignore[no-any-return]
    return column.in_(sources)  # type: ignore[no-any-return]


# The claimed step's columns, spelled out for subqueries in CLAIM's RETURNING: SQLite renders
# RETURNING columns unqualified, and there an unqualified run_id inside a subquery on artifacts
# means artifacts.run_id.
_STEP_RUN: Any = literal_column("steps.run_id")
_STEP_AGENT: Any = literal_column("steps.agent_id")

#: An LLM step's agent and run limits (``types.AgentLimits``): label, column, and how it is keyed.
_LIMITS = (
    ("agent_name", A.name, A.id, _STEP_AGENT),
    ("agent_depth", A.depth, A.id, _STEP_AGENT),
    ("agent_steps", A.steps, A.id, _STEP_AGENT),
    ("max_steps", R.max_steps_per_agent, R.id, _STEP_RUN),
    ("max_depth", R.max_depth, R.id, _STEP_RUN),
    ("model", R.model, R.id, _STEP_RUN),
    ("max_cost_pico", R.max_cost_pico, R.id, _STEP_RUN),
    ("max_tokens", R.max_tokens, R.id, _STEP_RUN),
    ("tenant", R.tenant, R.id, _STEP_RUN),
    ("mcp_config", R.mcp_config, R.id, _STEP_RUN),
    ("provider", R.provider, R.id, _STEP_RUN),
    ("provider_concurrency", R.provider_concurrency, R.id, _STEP_RUN),
    ("provider_rpm", R.provider_rpm, R.id, _STEP_RUN),
    ("provider_tpm", R.provider_tpm, R.id, _STEP_RUN),
)

#: Claim a ready step, or one whose lease expired, of a running run within its deadline.
CLAIM = (
    update(STEPS)
    .where(
        S.id == bindparam("b_id"),
        S.attempt < bindparam("b_max"),
        exists().where(R.id == S.run_id, R.status == RunStatus.RUNNING, R.deadline >= db_now()),
        or_(guard(S.status, STEP_CLAIM), and_(guard(S.status, STEP_TAKE_OVER), S.lease_until < db_now())),
    )
    .values(
        status=STEP_CLAIM.target,
        owner=bindparam("b_owner"),
        fence=S.fence + 1,
        attempt=S.attempt + 1,
        lease_until=db_now() + bindparam("b_lease"),
        started_at=bindparam("b_now"),
    )
    .returning(
        S.run_id,
        S.agent_id,
        S.kind,
        S.fence,
        S.attempt,
        S.turn,
        S.idx,
        S.tool_name,
        S.tool_call_id,
        S.arguments,
        S.msg_seq,
        S.note,
        # Only a tool step may need the workspace; an LLM step's claim skips the lookup.
        case((S.kind == StepKind.TOOL, exists().where(ARTIFACTS.c.run_id == _STEP_RUN)), else_=False).label(
            "run_has_files"
        ),
        # What an LLM step needs of its agent and run (as AGENT_AND_LIMITS reads it), in the
        # same round trip; NULL for tool steps.
        *(
            case((S.kind == StepKind.LLM, select(col).where(key == ref).scalar_subquery())).label(name)
            for name, col, key, ref in _LIMITS
        ),
    )
)

#: Close a claimed step; 0 rows means the fence moved on (taken over or cancelled).
CLOSE_STEP = (
    update(STEPS)
    .where(S.id == bindparam("b_id"), S.fence == bindparam("b_fence"), guard(S.status, STEP_SUCCEED))
    .values(
        status=bindparam("b_status"),
        finished_at=bindparam("b_now"),
        tokens_in=bindparam("b_tin"),
        tokens_out=bindparam("b_tout"),
        # NULL unless given: a tool step's close, or a call whose cost is unknown.
        tokens_cached=bindparam("b_tcached", None, type_=S.tokens_cached.type),
        tokens_reasoning=bindparam("b_treason", None, type_=S.tokens_reasoning.type),
        cost_pico=bindparam("b_cost", None, type_=S.cost_pico.type),
    )
)

# NO KEY UPDATE: must not block the KEY SHARE locks that foreign-key checks of concurrent inserts
# (messages, steps) take on the run row, or they deadlock with us.
LOCK_RUN = select(RUNS).where(R.id == bindparam("b_id")).with_for_update(key_share=True)

#: What committing a turn needs of its agent (not the prompt, not the result).
AGENT_COUNTERS = select(A.next_seq, A.pending_tools, A.steps).where(A.id == bindparam("b_id"))
#: What an LLM step needs of its agent and its run's limits, in one round trip.
AGENT_AND_LIMITS = (
    select(*(col.label(name) for name, col, _, _ in _LIMITS))
    .join_from(AGENTS, RUNS, R.id == A.run_id)
    .where(A.id == bindparam("b_id"))
)
MESSAGES_OF = select(MESSAGES).where(MESSAGES.c.agent_id == bindparam("b_id")).order_by(MESSAGES.c.seq)

INSERT_MESSAGE = MESSAGES.insert()
INSERT_EVENT = EVENTS.insert()
INSERT_STEP = STEPS.insert()
INSERT_READY_STEP = STEPS.insert().values(status=StepStatus.READY, ready_at=db_now())
INSERT_AWAITING_STEP = STEPS.insert().values(status=StepStatus.AWAITING_APPROVAL)

#: A run's own MCP config (a tool step of an mcp__ tool reads it).
RUN_MCP_CONFIG = select(R.mcp_config).where(R.id == bindparam("b_id"))
#: A run's tool-call, subagent and spend budgets and what is used of them (and its per-turn spawn cap).
RUN_BUDGETS = select(
    R.tool_calls,
    R.max_tool_calls,
    R.subagents,
    R.max_subagents,
    R.max_spawns_per_turn,
    R.cost_pico,
    R.max_cost_pico,
    R.tokens_in,
    R.tokens_out,
    R.max_tokens,
    R.approve_tools,
    R.approval_timeout,
).where(R.id == bindparam("b_id"))

#: How many times an agent already ran each of the given identical calls (the repeat guard's facts).
RAN_BEFORE = (
    select(S.call_key, func.count())
    .where(S.agent_id == bindparam("b_agent"), S.call_key.in_(bindparam("b_keys", expanding=True)))
    .group_by(S.call_key)
)

#: Count one committed turn and its granted budget, only if the budget still allows it.
COUNT_TURN = (
    update(RUNS)
    .where(
        R.id == bindparam("b_id"),
        R.tool_calls + bindparam("b_tools") <= R.max_tool_calls,
        R.subagents + bindparam("b_subs") <= R.max_subagents,
    )
    .values(
        llm_calls=R.llm_calls + 1,
        tokens_in=R.tokens_in + bindparam("b_tin"),
        tokens_out=R.tokens_out + bindparam("b_tout"),
        tokens_cached=R.tokens_cached + bindparam("b_tcached"),
        # NULL (unknown) stays NULL: a sum with an unknown part is unknown.
        cost_pico=R.cost_pico + bindparam("b_cost", type_=R.cost_pico.type),
        tool_calls=R.tool_calls + bindparam("b_tools"),
        subagents=R.subagents + bindparam("b_subs"),
        # Settle the call's reservation (domain.budget): its worst case off, its usage (above) on.
        reserved_pico=R.reserved_pico - bindparam("b_rpico", 0, type_=R.reserved_pico.type),
        reserved_tokens=R.reserved_tokens - bindparam("b_rtok", 0, type_=R.reserved_tokens.type),
    )
)

_RPICO = bindparam("b_rpico", type_=R.reserved_pico.type)
_RTOK = bindparam("b_rtok", type_=R.reserved_tokens.type)

#: Reserve a model call's worst case, only if it fits every cap of a running run (domain.budget).
RESERVE = (
    update(RUNS)
    .where(
        R.id == bindparam("b_id"),
        R.status == RunStatus.RUNNING,
        or_(R.max_cost_pico.is_(None), R.cost_pico + R.reserved_pico + _RPICO <= R.max_cost_pico),
        or_(
            R.max_tokens.is_(None),
            R.tokens_in + R.tokens_out + R.reserved_tokens + _RTOK <= R.max_tokens,
        ),
    )
    .values(
        reserved_pico=R.reserved_pico + _RPICO,
        reserved_tokens=R.reserved_tokens + _RTOK,
    )
)
#: Give back the reservation of a call that will not commit (it failed, or lost its step).
RELEASE = (
    update(RUNS)
    .where(R.id == bindparam("b_id"))
    .values(
        reserved_pico=case((R.reserved_pico > _RPICO, R.reserved_pico - _RPICO), else_=0),
        reserved_tokens=case((R.reserved_tokens > _RTOK, R.reserved_tokens - _RTOK), else_=0),
    )
)
#: A run's budget counters, when a reservation did not fit.
BUDGET_STATE = select(
    R.cost_pico,
    R.reserved_pico,
    R.max_cost_pico,
    (R.tokens_in + R.tokens_out).label("used_tokens"),
    R.reserved_tokens,
    R.max_tokens,
).where(R.id == bindparam("b_id"))

ADVANCE_AGENT = (
    update(AGENTS)
    .where(A.id == bindparam("b_id"))
    .values(
        steps=A.steps + 1,
        tokens_in=A.tokens_in + bindparam("b_tin"),
        tokens_out=A.tokens_out + bindparam("b_tout"),
        tokens_cached=A.tokens_cached + bindparam("b_tcached"),
        cost_pico=A.cost_pico + bindparam("b_cost", type_=A.cost_pico.type),
        next_seq=bindparam("b_next"),
        pending_tools=bindparam("b_pending"),
    )
)

#: Give a tool step its result, if it is in the expected state (and, for a claimed step, fence).
DELIVER = (
    update(STEPS)
    .where(
        S.id == bindparam("b_id"),
        S.status == bindparam("b_expected"),
        or_(bindparam("b_fence", type_=S.fence.type).is_(None), S.fence == bindparam("b_fence")),
    )
    .values(
        status=STEP_DELIVER.target,
        result=bindparam("b_result"),
        is_error=bindparam("b_error"),
        finished_at=bindparam("b_now"),
    )
    .returning(S.run_id, S.agent_id, S.msg_seq, S.tool_call_id, S.turn, S.note)
)

#: Fan-in: one fewer outstanding tool call; whoever brings it to 0 schedules the next LLM step.
FAN_IN = (
    update(AGENTS)
    .where(A.id == bindparam("b_id"), A.status == AgentStatus.RUNNING)
    .values(pending_tools=A.pending_tools - 1)
    .returning(A.pending_tools)
)


def _commit_tool() -> Any:
    """A tool step's whole commit as one statement, for PostgreSQL (data-modifying CTEs): the
    fenced result, the tool message, the event, the fan-in and, when this was the turn's last
    call, the agent's next LLM step. Each part runs only if the fenced UPDATE matched; it locks
    the step row, then the agent row, as the transaction of ``outcomes.deliver`` does.
    Returns ``delivered`` (0 when the fence moved on) and ``next_step_id`` (NULL if none)."""

    def typed(name: str, column: Any) -> Any:
        return bindparam(name, type_=column.type)

    M, E = MESSAGES.c, EVENTS.c
    delivered = (
        update(STEPS)
        .where(S.id == bindparam("b_id"), guard(S.status, STEP_SUCCEED), S.fence == bindparam("b_fence"))
        .values(
            status=STEP_SUCCEED.target,
            result=bindparam("b_result"),
            is_error=bindparam("b_error"),
            finished_at=bindparam("b_now"),
        )
        .returning(S.id)
        .cte("delivered")
    )
    message = (
        insert(MESSAGES)
        .from_select(
            ["run_id", "agent_id", "seq", "role", "content", "tool_call_id", "created_at"],
            select(
                typed("b_run", M.run_id),
                typed("b_agent", M.agent_id),
                typed("b_seq", M.seq),
                literal("tool"),
                typed("b_content", M.content),
                typed("b_tcid", M.tool_call_id),
                typed("b_now", M.created_at),
            ).select_from(delivered),
            include_defaults=False,
        )
        .cte("message")
    )
    event = (
        insert(EVENTS)
        .from_select(
            ["run_id", "ts", "type", "agent_id", "step_id", "data"],
            select(
                typed("b_run", E.run_id),
                typed("b_now", E.ts),
                literal("tool_done"),
                typed("b_agent", E.agent_id),
                typed("b_id", E.step_id),
                typed("b_data", E.data),
            ).select_from(delivered),
            include_defaults=False,
        )
        .cte("event")
    )
    fan_in = (
        update(AGENTS)
        .where(A.id == bindparam("b_agent"), A.status == AgentStatus.RUNNING, exists(select(delivered.c.id)))
        .values(pending_tools=A.pending_tools - 1)
        .returning(A.pending_tools)
        .cte("fan_in")
    )
    # Column defaults are applied only when the INSERT is the statement itself: give them all.
    next_step = (
        insert(STEPS)
        .from_select(
            [
                "id",
                "run_id",
                "agent_id",
                "kind",
                "status",
                "turn",
                "idx",
                "attempt",
                "fence",
                "ready_at",
                "is_error",
                "tokens_in",
                "tokens_out",
            ],
            select(
                typed("b_new", S.id),
                typed("b_run", S.run_id),
                typed("b_agent", S.agent_id),
                literal(StepKind.LLM.value),
                literal(StepStatus.READY.value),
                typed("b_next_turn", S.turn),
                literal(0),
                literal(0),
                literal(0),
                db_now(),
                literal(False),
                literal(0),
                literal(0),
            )
            .select_from(fan_in)
            .where(fan_in.c.pending_tools == 0),
            include_defaults=False,
        )
        .returning(S.id)
        .cte("next_step")
    )
    return select(
        select(func.count()).select_from(delivered).scalar_subquery().label("delivered"),
        select(next_step.c.id).scalar_subquery().label("next_step_id"),
    ).add_cte(message, event)


COMMIT_TOOL = _commit_tool()


# ------------------------------------------------------------- a tenant's daily spend cap

_T = TENANT_SPEND.c
_TENANT_DAY = and_(_T.tenant == bindparam("b_t"), _T.day == bindparam("b_d"))
#: Reserve a call's worst case on the tenant's day, only if it fits under the cap.
RESERVE_TENANT = (
    update(TENANT_SPEND)
    .where(_TENANT_DAY, _T.spent_pico + _T.reserved_pico + bindparam("b_p") <= bindparam("b_cap"))
    .values(reserved_pico=_T.reserved_pico + bindparam("b_p"))
)
#: Settle it: the reservation off (never below 0), the call's cost on (0 for a call that failed).
SETTLE_TENANT = (
    update(TENANT_SPEND)
    .where(_TENANT_DAY)
    .values(
        reserved_pico=case((_T.reserved_pico > bindparam("b_p"), _T.reserved_pico - bindparam("b_p")), else_=0),
        spent_pico=_T.spent_pico + bindparam("b_cost"),
    )
)
TENANT_STATE = select(_T.spent_pico, _T.reserved_pico).where(_TENANT_DAY)
