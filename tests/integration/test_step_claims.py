"""Claims, fences and duplicate delivery, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from swarm.engine.executor import StepExecutor
from swarm.engine.planner import plan_turn
from swarm.exceptions import FenceLost
from swarm.llm.client import LLMClient
from swarm.runtime import run_spec
from swarm.store.models import Step
from swarm.store.store import StateStore, owner_id
from swarm.tools.builtin import default_registry
from tests.conftest import make_settings


def first_step(store, settings, task="t #sim agents=1 tools=1 tool=echo"):
    run_id, refs = store.create_run(run_spec(settings, task))
    return run_id, refs[0]


def test_a_step_delivered_twice_commits_once(tmp_path, store, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, ref = first_step(store, s)
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, default_registry(s), s, owner_id())
        first = ex.execute(ref.step_id)
        second = ex.execute(ref.step_id)  # the broker redelivered the message
    assert len(first) == 1 and second == []
    assert sim.stats()["by_run"][run_id] == 1
    assert store.run_summary(run_id).llm_calls == 1


def test_two_workers_racing_for_one_step_one_wins(tmp_path, store, db_url):
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    _, ref = first_step(store, s)
    claims, barrier = [], threading.Barrier(8)

    def grab():
        barrier.wait()
        claims.append(store.claim(ref.step_id, owner_id(), lease=30))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c is not None for c in claims) == 1


def test_presumed_dead_workers_late_commit_is_refused_by_the_fence(tmp_path, store, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, ref = first_step(store, s)
    slow = store.claim(ref.step_id, "worker-a", lease=30)
    assert slow is not None
    # Worker A goes quiet; its lease runs out and worker B takes the step over.
    with store.tx() as conn:
        conn.execute(update(Step).where(Step.id == ref.step_id).values(lease_until=0))
    fast = store.claim(ref.step_id, "worker-b", lease=30)
    assert fast is not None and fast.fence == slow.fence + 1

    with LLMClient(s) as llm:
        ctx = store.agent_context(fast)
        response = llm.complete(ctx.messages, [])
    plan = plan_turn(response, {"create_subagent", "assign_task", "echo"}, last_step=False)
    store.commit_llm(fast, response, plan)
    with pytest.raises(FenceLost):
        store.commit_llm(slow, response, plan)
    assert store.run_summary(run_id).llm_calls == 1


def test_held_lease_cannot_be_claimed_until_it_expires(tmp_path, store, db_url):
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    _, ref = first_step(store, s)
    assert store.claim(ref.step_id, "a", lease=30) is not None
    assert store.claim(ref.step_id, "b", lease=30) is None
    assert store.sweep(republish_after=5) == []  # lease still valid: nothing to re-dispatch


def test_sweeper_redispatches_expired_leases(tmp_path, store, db_url):
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    _, ref = first_step(store, s)
    assert store.claim(ref.step_id, "dead-worker", lease=30) is not None
    with store.tx() as conn:
        conn.execute(update(Step).where(Step.id == ref.step_id).values(lease_until=0))
    refs = store.sweep(republish_after=5)
    assert [r.step_id for r in refs] == [ref.step_id]
    assert store.claim(ref.step_id, "live-worker", lease=30) is not None


def test_sweeper_gives_up_after_max_attempts(tmp_path, store, db_url):
    s = make_settings(tmp_path, db_url, "http://unused.invalid/v1")
    run_id, ref = first_step(store, s)
    for _ in range(3):
        assert store.claim(ref.step_id, "crashy", lease=30, max_attempts=3) is not None
        with store.tx() as conn:
            conn.execute(update(Step).where(Step.id == ref.step_id).values(lease_until=0))
    store.sweep(republish_after=5, max_attempts=3)
    summary = store.run_summary(run_id)
    assert summary.status == "failed"
    assert "3 times" in (summary.reason or "")


def test_cancelled_run_refuses_claims_and_commits(tmp_path, store, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, ref = first_step(store, s)
    claim = store.claim(ref.step_id, "w", lease=30)
    assert claim is not None
    assert store.cancel_run(run_id)
    with LLMClient(s) as llm:
        response = llm.complete(store.agent_context(claim).messages, [])
    with pytest.raises(FenceLost):
        store.commit_llm(claim, response, plan_turn(response, set(), last_step=False))
    assert store.claim(ref.step_id, "w2", lease=30) is None
    assert all(a["status"] == "cancelled" for a in store.agent_tree(run_id))


@pytest.mark.postgres
def test_an_idle_pooled_connection_killed_by_the_server_is_replaced_before_use(pg_url, monkeypatch):
    """No ping on the hot path, but a connection idle past PING_IDLE_SECONDS is checked first."""
    from sqlalchemy import text

    from swarm.store import db

    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)
    store = StateStore.from_url(pg_url, pool_size=1)
    try:
        with store.read() as conn:
            pid = conn.execute(text("select pg_backend_pid()")).scalar_one()
        admin = StateStore.from_url(pg_url, pool_size=1)
        with admin.read() as conn:
            assert conn.execute(text("select pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        admin.engine.dispose()
        with store.read() as conn:  # the dead connection is replaced, no error reaches us
            assert conn.execute(text("select pg_backend_pid()")).scalar_one() != pid
    finally:
        store.engine.dispose()


def test_a_claim_says_whether_the_run_has_workspace_files(tmp_path, store, db_url, sim):
    """Tool steps of a run without files skip reading them; once a step wrote one, claims see it.
    Another run's files do not count (the second run starts while the first one has files)."""
    s = make_settings(tmp_path, db_url, sim.url)
    claim = store.claim
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, default_registry(s), s, owner_id())
        for _ in range(2):
            run_id, ref = first_step(store, s, "t #sim agents=1 tools=2 tool=python scenario=files")
            seen: list[tuple[str | None, bool]] = []

            def spy(*args, seen=seen, **kwargs):
                c = claim(*args, **kwargs)
                if c is not None:
                    seen.append((c.tool_name, c.run_has_files))
                return c

            store.claim = spy  # records what each claim returned; the steps run for real
            try:
                pending = [ref]
                while pending:
                    pending = [r for p in pending for r in ex.execute(p.step_id)]
            finally:
                del store.claim
            python = [has for name, has in seen if name == "python"]
            assert python[0] is False and all(python[1:]), seen
            assert store.run_summary(run_id).status == "succeeded"
            assert store.artifacts(run_id)


@pytest.mark.postgres
def test_a_worker_pool_never_opens_more_connections_than_its_size(pg_url):
    """Threads wait for a pooled connection instead of opening (and soon closing) another one;
    one that waits past the pool's timeout gets StoreUnavailable, which callers retry."""
    from sqlalchemy import text

    from swarm.exceptions import StoreUnavailable
    from swarm.store.db import make_engine

    engine = make_engine(pg_url, pool_size=2, max_overflow=0)
    engine.pool._timeout = 0.2  # type: ignore[attr-defined]
    store = StateStore(engine)
    held: list[object] = []
    try:
        with store.read() as c1, store.read() as c2:
            held += [
                c1.execute(text("select pg_backend_pid()")).scalar_one(),
                c2.execute(text("select pg_backend_pid()")).scalar_one(),
            ]
            with pytest.raises(StoreUnavailable, match="no free database connection"), store.read():
                pass
        with store.read() as conn:  # a returned connection is reused, not replaced
            assert conn.execute(text("select pg_backend_pid()")).scalar_one() in held
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("commit_kind", ["fan_in", "launch"])
def test_a_cancel_racing_a_commit_leaves_nothing_open(tmp_path, pg_url, sim, commit_kind):
    """A commit holds its step's row (result delivered, or launch begun) when the cancel starts,
    and while the cancel waits it schedules the agent's next LLM step (``fan_in``: the turn's
    last tool result) or creates a child agent and its first step (``launch``). Nothing it made
    may survive the cancel as READY / RUNNING: a resume would run it next to what it creates."""
    from sqlalchemy import func, insert, select
    from sqlalchemy.exc import DBAPIError

    from swarm.domain.status import StepStatus
    from swarm.store import statements as sql
    from swarm.store.models import Agent
    from swarm.store.store import OPEN

    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url, pool_size=4)
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, default_registry(s), s, owner_id())
        run_id, ref = first_step(store, s)
        (tool_ref,) = ex.execute(ref.step_id)  # the orchestrator's turn: one create_subagent call
    claim = store.claim(tool_ref.step_id, "w", lease=30)
    assert claim is not None
    cancelled: list[bool] = []
    new_step = {"run_id": run_id, "kind": "llm", "idx": 0, "attempt": 0, "fence": 0}
    with store.engine.connect() as commit:  # the commit, statement by statement, as the store runs it
        if commit_kind == "fan_in":
            commit.execute(
                sql.DELIVER,
                {
                    "b_id": claim.step_id,
                    "b_expected": StepStatus.RUNNING,
                    "b_fence": claim.fence,
                    "b_result": "ok",
                    "b_error": False,
                    "b_now": 0.0,
                },
            )
        else:
            commit.execute(
                sql.CLOSE_STEP,
                {
                    "b_id": claim.step_id,
                    "b_fence": claim.fence,
                    "b_status": StepStatus.WAITING,
                    "b_now": 0.0,
                    "b_tin": 0,
                    "b_tout": 0,
                },
            )
        canceller = threading.Thread(target=lambda: cancelled.append(store.cancel_run(run_id)))
        canceller.start()
        canceller.join(timeout=0.5)  # now waiting for the step's row lock
        try:
            if commit_kind == "fan_in":
                left = commit.execute(sql.FAN_IN, {"b_id": claim.agent_id}).first()
                assert left is not None and left.pending_tools == 0
                commit.execute(
                    sql.INSERT_READY_STEP,
                    {**new_step, "id": "n" * 32, "agent_id": claim.agent_id, "turn": claim.turn + 1},
                )
            else:
                commit.execute(
                    insert(Agent).values(
                        id="c" * 32,
                        run_id=run_id,
                        parent_id=claim.agent_id,
                        parent_step_id=claim.step_id,
                        parent_turn=claim.turn,
                        name="child",
                        depth=1,
                        status="running",
                        steps=0,
                        next_seq=2,
                        pending_tools=0,
                        tokens_in=0,
                        tokens_out=0,
                        created_at=0.0,
                    )
                )
                commit.execute(sql.INSERT_READY_STEP, {**new_step, "id": "n" * 32, "agent_id": "c" * 32, "turn": 0})
            commit.commit()
        except DBAPIError:  # PostgreSQL broke a deadlock by aborting the commit: the cancel goes on
            commit.rollback()
        canceller.join(timeout=30)
    assert cancelled == [True]
    with store.read() as conn:
        open_steps = conn.execute(select(func.count()).where(Step.run_id == run_id, Step.status.in_(OPEN))).scalar()
        running_agents = conn.execute(
            select(func.count()).where(Agent.run_id == run_id, Agent.status == "running")
        ).scalar()
    assert (open_steps, running_agents) == (0, 0)
    store.engine.dispose()


def _claim_first_echo_step(store, ex, run_id, refs):
    queue = list(refs)
    while queue:
        ref = queue.pop(0)
        if ref.tool_name == "echo":
            return ref
        queue += ex.execute(ref.step_id)
    raise AssertionError(f"run {run_id} never reached an echo step")


@pytest.mark.postgres
@pytest.mark.parametrize("note", [None, "(2 of 3 tool calls used)"])
def test_a_tool_commit_in_one_statement_records_what_the_transaction_records(tmp_path, pg_url, sim, note):
    """On PostgreSQL a tool step commits as one statement; SQLite (and steps that wrote files)
    take the transaction. Both must leave the same rows, and both refuse a moved fence."""
    import dataclasses

    from sqlalchemy import select

    from swarm.store.models import Event, Message

    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url, pool_size=4)
    recorded = []
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, default_registry(s), s, owner_id())
        for at_once in (True, False):
            run_id, refs = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
            ref = _claim_first_echo_step(store, ex, run_id, refs)
            with store.tx() as conn:
                conn.execute(update(Step).where(Step.id == ref.step_id).values(note=note))
            claim = store.claim(ref.step_id, "w", lease=30)
            assert claim is not None and claim.msg_seq is not None and claim.note == note
            if not at_once:
                claim = dataclasses.replace(claim, msg_seq=None)  # what a claim without it gets: the transaction
            with pytest.raises(FenceLost):
                store.commit_tool(dataclasses.replace(claim, fence=claim.fence + 1), "late", False)
            refs = store.commit_tool(claim, "echoed", False)
            with store.read() as conn:
                step = conn.execute(select(Step.status, Step.result, Step.is_error).where(Step.id == ref.step_id)).one()
                msgs = conn.execute(
                    select(Message.seq, Message.role, Message.content, Message.tool_call_id)
                    .where(Message.agent_id == ref.agent_id)
                    .order_by(Message.seq)
                ).all()
                events = conn.execute(
                    select(Event.type, Event.agent_id, Event.step_id, Event.data).where(
                        Event.run_id == run_id, Event.type == "tool_done"
                    )
                ).all()
                nxt = conn.execute(
                    select(
                        Step.kind,
                        Step.status,
                        Step.turn,
                        Step.idx,
                        Step.attempt,
                        Step.fence,
                        Step.is_error,
                        Step.tokens_in,
                        Step.ready_at.is_not(None),
                    ).where(Step.id == refs[0].step_id)
                ).one()
            recorded.append(
                (
                    tuple(step),
                    [tuple(m) for m in msgs],
                    [(e.type, e.data) for e in events],
                    [(r.kind, r.tool_name) for r in refs],
                    tuple(nxt),
                )
            )
            assert all(e.agent_id == ref.agent_id and e.step_id == ref.step_id for e in events)
    assert recorded[0] == recorded[1]
    step, msgs, _, refs_, _ = recorded[0]
    assert step == ("succeeded", "echoed", False) and refs_ == [("llm", None)]
    assert msgs[-1][1:] == ("tool", "echoed" if note is None else f"echoed\n{note}", "functions.echo:0")
    store.engine.dispose()


def test_an_llm_claim_brings_its_agent_and_run_limits(tmp_path, store, db_url, sim):
    """The claim of an LLM step reads the agent and the run's limits in its own round trip; the
    context built from them is the one built by reading them separately. Tool claims carry none."""
    import dataclasses

    s = make_settings(tmp_path, db_url, sim.url, model="kimi-k2.5")
    run_id, ref = first_step(store, s)
    claim = store.claim(ref.step_id, "w", lease=30)
    assert claim is not None and claim.agent is not None
    assert (claim.agent.depth, claim.agent.steps, claim.agent.model) == (0, 0, "kimi-k2.5")
    assert store.agent_context(claim) == store.agent_context(dataclasses.replace(claim, agent=None))
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, default_registry(s), s, owner_id())
        store.release(claim)
        (tool_ref,) = ex.execute(ref.step_id)
    tool_claim = store.claim(tool_ref.step_id, "w", lease=30)
    assert tool_claim is not None and tool_claim.agent is None
