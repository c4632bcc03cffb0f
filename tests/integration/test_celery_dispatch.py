"""The Celery side without worker processes: configuration, what a publish puts on Redis, publishing
after Redis lost everything, and the step task run in-process against real Postgres and the sim
(a duplicate delivery is a no-op)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarm.config import Settings
from swarm.constants import QUEUE_LLM, QUEUE_TOOL
from swarm.dispatch.celery import VISIBILITY_TIMEOUT, CeleryDispatcher, celery_config
from swarm.domain.status import StepKind
from swarm.exceptions import ConfigError
from swarm.runtime import run_spec
from swarm.store.store import StateStore
from swarm.store.types import StepRef
from tests.conftest import make_settings

pytestmark = [pytest.mark.redis]


def _messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    out = []
    for raw in client.lrange(queue, 0, -1):
        msg = json.loads(raw)
        body = json.loads(base64.b64decode(msg["body"]))
        out.append({"headers": msg["headers"], "args": body[0], "kwargs": body[1]})
    return out


def test_config_is_at_least_once_and_has_one_visibility_timeout(tmp_path):
    conf = celery_config(Settings(_env_file=None, home=tmp_path, broker_url="redis://localhost:6379/0"))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["task_retry_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_ignore_result"] and conf["broker_connection_retry_on_startup"]
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]
    assert conf["worker_soft_shutdown_timeout"] > 0
    # ...for running steps only: an idle worker's cold shutdown (Ctrl-C twice) does not wait it out.
    assert conf["worker_enable_soft_shutdown_on_idle"] is False
    assert (
        conf["broker_transport_options"]["visibility_timeout"]
        == conf["result_backend_transport_options"]["visibility_timeout"]
        == conf["visibility_timeout"]
        == VISIBILITY_TIMEOUT
    )
    # Far above the longest step: a model call may take llm_timeout on each of its attempts.
    s = Settings(_env_file=None, home=tmp_path)
    assert s.llm_timeout * (s.llm_max_retries + 1) + s.python_timeout < VISIBILITY_TIMEOUT
    assert {q.name for q in conf["task_queues"]} == {QUEUE_LLM, QUEUE_TOOL}
    assert "beat_schedule" not in conf  # the sweeper is a thread in every worker, not a beat task
    with pytest.raises(ConfigError, match="SWARM_BROKER_URL"):
        celery_config(Settings(_env_file=None, home=tmp_path))


def test_dispatch_routes_labels_and_survives_a_flush(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    d = CeleryDispatcher.from_settings(Settings(_env_file=None, home=tmp_path, broker_url=redis_url), "c0")
    refs = [
        StepRef("a" * 32, "run1", "agent1", StepKind.LLM),
        StepRef("b" * 32, "run1", "agent1", StepKind.TOOL, "assign_task"),
        StepRef("c" * 32, "run1", "agent2", StepKind.TOOL, "python"),
    ]
    d.dispatch(refs)
    llm, tool = _messages(client, QUEUE_LLM), _messages(client, QUEUE_TOOL)
    # Orchestration tools are database-only: they go with the LLM steps.
    assert sorted(m["kwargs"]["step_id"] for m in llm) == ["a" * 32, "b" * 32]
    assert [m["kwargs"]["tool"] for m in tool] == ["python"]
    head = tool[0]["headers"]
    # Flower's list says what each step is: its name the kind and tool, its id run, agent, tool, step.
    assert head["task"] == "swarm.tool.python" and head["id"].startswith("run1-agent2-python-cccccccc-")
    assert sorted(m["headers"]["task"] for m in llm) == ["swarm.llm", "swarm.tool.assign_task"]
    assert {m["headers"]["id"][:12] for m in llm} == {"run1-agent1-"}
    assert tool[0]["kwargs"] == {
        "step_id": "c" * 32,
        "run_id": "run1",
        "agent_id": "agent2",
        "kind": "tool",
        "tool": "python",
        "cluster": "c0",
    }
    # Redis loses everything (FLUSHALL / restart without AOF): the same dispatcher still publishes.
    client.flushdb()
    d.dispatch(refs[:1])
    again = _messages(client, QUEUE_LLM)
    assert len(again) == 1 and again[0]["headers"]["id"] != llm[0]["headers"]["id"]
    d.close()
    client.close()


def test_dispatch_never_raises_when_the_broker_is_down(tmp_path):
    d = CeleryDispatcher.from_settings(
        Settings(_env_file=None, home=tmp_path, broker_url="redis://127.0.0.1:1/0"), "c0"
    )
    t0 = time.monotonic()
    d.dispatch([StepRef("a" * 32, "r", "g", StepKind.LLM)])  # logged; the sweeper re-publishes later
    assert time.monotonic() - t0 < 15
    d.close()


@pytest.fixture
def worker_ctx(monkeypatch: pytest.MonkeyPatch, tmp_path, pg_url, redis_url, sim) -> Iterator[Settings]:
    """The workers package's per-process context, pointed at this test's services."""
    import workers.celery_app
    from workers import context

    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    app = workers.celery_app.app
    original = workers.celery_app.settings
    monkeypatch.setattr(workers.celery_app, "settings", s)
    monkeypatch.setitem(app.conf, "broker_url", redis_url)
    context.shutdown()
    context.bind(app, s)
    app.close()  # connection pools are made lazily from the (now patched) configuration
    yield s
    context.shutdown()
    context.bind(app, original)
    app.close()


@pytest.mark.postgres
def test_step_task_runs_once_and_a_duplicate_delivery_is_a_no_op(worker_ctx, pg_url, redis_url, sim):
    from swarm.engine.election import ElectedSweeper
    from workers.context import context
    from workers.tasks import step

    store = StateStore.from_url(pg_url, pool_size=2)
    sweeper = ElectedSweeper(
        store,
        "test:1:sweeper",
        interval=2.0,
        republish_after=worker_ctx.republish_after,
        dispatch=context().dispatcher.dispatch,
    )
    run_id, refs = store.create_run(run_spec(worker_ctx, "dup #sim agents=1 tools=1 tool=echo"))
    (ref,) = refs
    client = redis.Redis.from_url(redis_url)
    # An LLM step's task returns once its model call is on the process's model loop: nothing is
    # ready yet. The commit follows on the worker's commit threads, and publishes what it made ready.
    assert step.run(ref.step_id) == 0
    deadline = time.monotonic() + 30
    while len(_messages(client, QUEUE_LLM)) < 1:  # the first turn made create_subagent ready
        assert time.monotonic() < deadline, "the model call was never committed"
        time.sleep(0.05)
    assert context().executor().in_flight() == []
    assert step.run(ref.step_id) == 0  # redelivered: nothing to claim, nothing called, nothing published
    assert len(_messages(client, QUEUE_LLM)) == 1
    assert sim.stats()["by_run"][run_id] == 1
    # The published step is lost (Redis flushed): once it is older than republish_after the elected
    # sweeper publishes it again.
    client.flushdb()
    assert sweeper.tick() == 0 and sweeper.leading
    with store.tx() as conn:
        from sqlalchemy import update

        from swarm.store.models import Step

        conn.execute(
            update(Step)
            .where(Step.run_id == run_id, Step.status == "ready")
            .values(ready_at=Step.ready_at - worker_ctx.republish_after - 1)
        )
    assert sweeper.tick() == 1
    assert len(_messages(client, QUEUE_LLM)) == 1
    sweeper.stop()
    client.close()
    store.engine.dispose()


@pytest.mark.postgres
def test_a_step_of_another_deployment_is_refused_and_goes_back(worker_ctx, pg_url, sim, caplog, monkeypatch):
    from celery.exceptions import Reject

    from swarm.domain.status import StepStatus
    from workers import identity
    from workers.context import context
    from workers.tasks import step

    monkeypatch.setattr(identity, "REFUSAL_PAUSE", 0.0)
    store = StateStore.from_url(pg_url, pool_size=2)
    run_id, (ref,) = store.create_run(run_spec(worker_ctx, "foreign #sim agents=1 tools=1 tool=echo"))
    mine, theirs = context().cluster_id, "f" * 32
    assert mine == store.cluster_id() and len(mine) == 32
    with pytest.raises(Reject) as refused:  # run in-process there is no message to copy: requeued
        step.run(ref.step_id, run_id=run_id, cluster=theirs)
    assert refused.value.requeue  # back to its queue, for a worker of its own deployment
    (line,) = [r for r in caplog.records if r.levelname == "ERROR" and "refused" in r.getMessage()]
    assert theirs in line.getMessage() and mine in line.getMessage()
    assert run_id not in sim.stats()["by_run"]  # nothing claimed, no model call
    assert [r.step_id for r in store.steps_of(run_id, [StepStatus.READY])] == [ref.step_id]
    with pytest.raises(Reject):  # refused again, but said only every REPEAT_EVERY seconds
        step.run(ref.step_id, run_id=run_id, cluster=theirs)
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    step.run(ref.step_id, run_id=run_id, cluster=mine)  # its own deployment's message runs
    deadline = time.monotonic() + 30
    while (
        ref.step_id in {r.step_id for r in store.steps_of(run_id, [StepStatus.READY])}
        or run_id not in sim.stats()["by_run"]
    ):
        assert time.monotonic() < deadline, "the step of this deployment never ran"
        time.sleep(0.05)
    store.engine.dispose()


def test_every_step_name_is_a_task_of_the_workers():
    """A publisher's task name must be registered on the workers (Celery drops unknown tasks), for
    every tool the workers know; old messages (swarm.step) still run."""
    import workers
    from swarm.constants import ORCHESTRATION_TOOLS
    from swarm.dispatch.celery import STEP_TASKS, TOOL_TASK_NAMES, task_name
    from swarm.tools.builtin import default_registry

    tools = set(default_registry(Settings(_env_file=None)).names()) | ORCHESTRATION_TOOLS
    assert tools <= TOOL_TASK_NAMES
    assert set(STEP_TASKS) <= set(workers.app.tasks)
    assert {"swarm.step", "swarm.llm", "swarm.tool", "swarm.tool.python"} <= set(workers.app.tasks)
    assert task_name(StepRef("s", "r", "a", StepKind.TOOL, "some_new_tool")) == "swarm.tool"
    assert task_name(StepRef("s", "r", "a", StepKind.LLM)) == "swarm.llm"


def test_worker_db_pool_follows_the_pool_type():
    from celery.concurrency import get_implementation

    import workers.celery_app
    from workers import context

    class Sender:  # what Celery's worker_init hands over (a WorkController), as far as used
        app = workers.celery_app.app
        concurrency = 128
        pool_cls = get_implementation("threads")

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(workers.celery_app, "check_node", lambda *a: {"cluster": "c0"})
            workers.celery_app._on_worker_init(Sender())
            assert context.db_pool_size() == 16  # 128 threads share 16 connections, never more
            Sender.concurrency = 8
            workers.celery_app._on_worker_init(Sender())
            assert context.db_pool_size() == 4
            Sender.pool_cls = get_implementation("prefork")
            workers.celery_app._on_worker_init(Sender())
            assert context.db_pool_size() == 2  # one task at a time per child, plus the heartbeat
    finally:
        context.configure_pool(1, False)


@pytest.mark.postgres
def test_heartbeat_renews_only_steps_in_flight(tmp_path, pg_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url, pool_size=2)
    _, (ref,) = store.create_run(run_spec(s, "hb #sim agents=1 tools=1 tool=echo"))
    claim = store.claim(ref.step_id, "host:1:abc", 10.0)
    assert claim is not None
    assert store.heartbeat("host:1:abc", 10.0, steps=[]) == 0  # its thread gave up: let it expire
    assert store.heartbeat("host:1:abc", 10.0, steps=[ref.step_id]) == 1
    assert store.heartbeat("host:1:abc", 10.0) == 1
    store.engine.dispose()


def test_publishing_reuses_one_redis_client_per_channel_until_the_pool_changes(tmp_path, redis_url):
    from swarm.dispatch import redis_transport

    d = CeleryDispatcher.from_settings(Settings(_env_file=None, home=tmp_path, broker_url=redis_url), "c0")
    try:
        with d.app.connection_for_write() as conn:
            assert isinstance(conn.transport, redis_transport.Transport)
            channel = conn.default_channel
            with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
                assert first is second
            channel._pool = None  # what kombu does after a fork or a lost connection
            with channel.conn_or_acquire() as third:
                assert third is not first and third.connection_pool is channel.pool
        ref = StepRef("s" * 32, "r" * 32, "a" * 32, StepKind.TOOL, "echo")
        d.dispatch([ref, ref])
        published = _messages(redis.Redis.from_url(redis_url), QUEUE_TOOL)
        assert [m["kwargs"]["step_id"] for m in published] == [ref.step_id] * 2
    finally:
        d.close()
