"""The cluster dispatcher: one Celery message per ready step, on Redis.

Postgres is the record; a message is only a hint that a step may be ready. Losing one (Redis
flushed, a publish failing) is repaired by the sweeper, and a duplicate finds the step already
claimed (``StateStore.claim`` returns None), so publishing is fire-and-forget by design.

This module owns the Celery configuration so the CLI (which only publishes) and the workers (the
``workers`` package, which also consumes) can never disagree on it — in particular on the Redis
visibility timeout, which must be identical on every process that touches the broker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from swarm.config import Settings
from swarm.constants import ASSIGN_TASK, ASSIGN_TASKS, CREATE_SUBAGENT, QUEUE_LLM, QUEUE_TOOL
from swarm.dispatch import redis_transport
from swarm.dispatch.base import queue_for
from swarm.domain.status import StepKind
from swarm.exceptions import ConfigError
from swarm.store.types import StepRef

log = logging.getLogger(__name__)

#: What Flower lists: ``swarm.llm`` for a model call, ``swarm.tool.<tool>`` for a tool call.
LLM_TASK = "swarm.llm"
TOOL_TASK = "swarm.tool"
#: Tools with a task name of their own; any other tool is published as plain ``swarm.tool``.
#: (A worker must know a name before a publisher uses it: Celery drops unregistered tasks.)
TOOL_TASK_NAMES = frozenset({"python", "web_fetch", "web_search", "echo", CREATE_SUBAGENT, ASSIGN_TASK, ASSIGN_TASKS})
#: The name every step had before issue 15; still registered for messages queued by older versions.
STEP_TASK = "swarm.step"
#: Every name a worker runs steps under (all the same task).
STEP_TASKS = (LLM_TASK, TOOL_TASK, *(f"{TOOL_TASK}.{t}" for t in sorted(TOOL_TASK_NAMES)), STEP_TASK)
QUEUES = (QUEUE_LLM, QUEUE_TOOL)

#: Seconds before Redis hands an unacknowledged message to another worker. Recovery never waits
#: for it (the sweeper re-dispatches from Postgres within seconds); it only has to exceed the
#: longest step so a running step is not redelivered mid-flight: a model call may take
#: llm_timeout (600 s) x 7 attempts with backoff. Kept as a constant, not a setting, because the
#: kombu scan uses the *scanning* worker's value: two workers with different values would
#: requeue each other's running messages.
VISIBILITY_TIMEOUT = 7200


NO_BROKER = "SWARM_BROKER_URL is empty: set it to the Redis URL of the cluster (e.g. redis://localhost:6379/0)"


def celery_config(settings: Settings, *, require_broker: bool = True) -> dict[str, Any]:
    """The whole Celery configuration, derived from swarm's settings. Without a broker URL it
    raises, unless ``require_broker`` is False (importing ``workers`` for ``--help``, tests)."""
    if not settings.broker_url and require_broker:
        raise ConfigError(NO_BROKER)
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT}
    conf: dict[str, Any] = {"broker_url": settings.broker_url} if settings.broker_url else {}
    if settings.broker_url.startswith("redis://"):
        conf["broker_transport"] = redis_transport.TRANSPORT  # kombu's, reusing its publishing client
    return conf | {
        "broker_transport_options": dict(transport),
        "result_backend_transport_options": dict(transport),
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "broker_connection_retry_on_startup": True,
        # Producers in a 128-thread LLM worker publish concurrently; the default 10 would queue them.
        "broker_pool_limit": 32,
        # At-least-once: a message is acked only after the step committed (or was found done), and
        # a pool child killed mid-task gets its message back. Duplicates are harmless (fencing).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Celery >= 5.7: re-send (bounded by max_retries) instead of requeue, avoiding loops.
        "task_retry_on_worker_lost": True,
        # Prefetched messages sit in Redis's unacked index with their visibility clock running.
        "worker_prefetch_multiplier": 1,
        # On a warm/cold shutdown give running steps time to commit before the process goes.
        "worker_soft_shutdown_timeout": 30.0,
        # ...but an idle worker stops at once: with this on, a cold shutdown (Ctrl-C twice, which
        # is what a terminal's Ctrl-C used to deliver to `swarm worker`'s children) waited the full
        # 30 s with nothing running. Messages held for a countdown need no soft phase here: the
        # sweeper re-publishes every step from Postgres.
        "worker_enable_soft_shutdown_on_idle": False,
        # Postgres is the record: no result backend, nothing to expire or lose.
        "task_ignore_result": True,
        "result_backend": None,
        # Flower sees a task from the moment it is published, not only once a worker takes it.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Remote control (inspect, ping, rate_limit, pool_restart, shutdown, ... over the broker's
        # pidbox) lets anything that can write to the broker steer the workers: off unless the
        # operator wants Flower's worker pages and buttons (SWARM_CELERY_REMOTE_CONTROL=true).
        "worker_enable_remote_control": settings.celery_remote_control,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [
            Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
            for name in QUEUES
        ],
        "task_default_queue": QUEUE_LLM,
        "task_create_missing_queues": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "timezone": "UTC",
    }


def make_app(settings: Settings, main: str = "swarm") -> Celery:
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def task_name(ref: StepRef) -> str:
    """``swarm.llm``, ``swarm.tool.python``, ...: what a step is, at a glance in Flower's task list."""
    if ref.kind == StepKind.LLM:
        return LLM_TASK
    if ref.tool_name in TOOL_TASK_NAMES:
        return f"{TOOL_TASK}.{ref.tool_name}"
    return TOOL_TASK


def task_id(ref: StepRef) -> str:
    """``<run8>-<agent8>-<llm|tool>-<step8>-<nonce>``: sorts and searches by run in Flower, says
    which agent and what it does; unique per publish (a re-dispatch is its own message). Nothing
    relies on it: duplicates are found by the step's claim, never by the task id."""
    what = "llm" if ref.kind == StepKind.LLM else (ref.tool_name or "tool")
    return f"{ref.run_id[:8]}-{ref.agent_id[:8]}-{what}-{ref.step_id[:8]}-{uuid.uuid4().hex[:6]}"


def step_kwargs(ref: StepRef, cluster: str) -> dict[str, Any]:
    """step_id is what the worker runs and cluster is whose step it is (the id of the deployment's
    database: a worker of another deployment refuses the message); the rest lets an operator
    follow a swarm in Flower."""
    return {
        "step_id": ref.step_id,
        "run_id": ref.run_id,
        "agent_id": ref.agent_id,
        "kind": ref.kind.value,
        "tool": ref.tool_name,
        "cluster": cluster,
    }


class CeleryDispatcher:
    """Publishes ready steps to their queues (``swarm.llm`` or ``swarm.tool``), each stamped with
    the publishing deployment's cluster id (``StateStore.cluster_id``; a callable is asked once,
    at the first publish, so building a dispatcher touches no database)."""

    def __init__(self, app: Celery, cluster: str | Callable[[], str]) -> None:
        self.app = app
        self._cluster = cluster

    @classmethod
    def from_settings(cls, settings: Settings, cluster: str | Callable[[], str]) -> CeleryDispatcher:
        return cls(make_app(settings), cluster)

    @property
    def cluster(self) -> str:
        if callable(self._cluster):
            self._cluster = self._cluster()
        return self._cluster

    def dispatch(self, refs: Sequence[StepRef]) -> None:
        """Publish every ref; never raises. A step whose publish failed stays ready in Postgres and
        the sweeper re-publishes it after ``republish_after`` seconds."""
        failed = 0
        for ref in refs:
            try:
                kwargs = step_kwargs(ref, self.cluster)
                self.app.send_task(
                    task_name(ref),
                    kwargs=kwargs,
                    queue=queue_for(ref),
                    task_id=task_id(ref),
                    # What Flower shows; Celery's own saferepr costs more than the publish.
                    argsrepr="()",
                    kwargsrepr=repr(kwargs),
                    # Fail fast: the sweeper is the retry, not this thread.
                    retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
                )
            except Exception as exc:  # the broker is down or flushed mid-publish
                failed += 1
                if failed == 1:
                    log.warning(
                        "could not publish step %s (%s: %s); the sweeper will re-publish it",
                        ref.step_id,
                        type(exc).__name__,
                        exc,
                        extra={"run_id": ref.run_id},
                    )
        if failed > 1:
            log.warning("%d of %d publishes failed; the sweeper will re-publish them", failed, len(refs))

    def close(self) -> None:
        self.app.close()
