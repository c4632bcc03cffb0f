"""The Celery application, configured from ``SWARM_*`` settings, and its start-up checks.

The checks run in the worker's main process before any pool process exists, so a misconfigured
node stops at once with one clear line instead of failing every task it takes.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from contextvars import Token
from typing import Any, NoReturn

from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger

from swarm import logs
from swarm.config import Settings
from swarm.constants import QUEUE_LLM
from swarm.dispatch.celery import NO_BROKER, celery_config
from swarm.exceptions import SwarmError
from workers import context, sweeper
from workers.consumer import CONSUMER

log = logging.getLogger(__name__)

settings = Settings()
app = Celery("swarm", set_as_current=True)
app.conf.update(celery_config(settings, require_broker=False), worker_consumer=CONSUMER)
context.bind(app, settings)


def _refuse(message: str) -> NoReturn:
    # Signal handlers' exceptions are logged and swallowed by Celery; SystemExit is not.
    sys.stderr.write(f"swarm worker: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def check_node(s: Settings, queues: set[str]) -> dict[str, Any]:
    """What a worker needs before it takes any step; raises :class:`SwarmError` with the fix.
    Returns what an operator wants to know of the cluster: its id (the database's, which every
    step message must carry) and who holds the sweeper role."""
    from swarm.constants import SWEEPER_ROLE
    from swarm.exceptions import ConfigError
    from swarm.store.db import make_engine
    from swarm.store.migrate import ensure_schema
    from swarm.store.store import StateStore

    if not s.broker_url:
        raise ConfigError(NO_BROKER)
    if not s.database_url.startswith("postgresql"):
        raise ConfigError(
            "workers need the cluster's shared PostgreSQL database: set SWARM_DATABASE_URL "
            "(e.g. postgresql://swarm:swarm@db:5432/swarm)"
        )
    if QUEUE_LLM in queues and not s.llm_base_url:
        raise ConfigError(
            f"this worker consumes {QUEUE_LLM} but SWARM_LLM_BASE_URL is empty: set the model "
            "endpoint (for the simulated model run `swarm sim-llm` and point at it)"
        )
    if QUEUE_LLM in queues:
        from swarm.domain import pricing

        pricing.load(s.prices)  # an error in SWARM_PRICES stops the worker here, naming the line
    from swarm.tools.mcp_hub import deployment_servers

    deployment_servers(s)  # an error in SWARM_MCP_CONFIG stops the worker here, saying what is wrong
    engine = make_engine(s.db_url, pool_size=1)
    try:
        # Workers never migrate: an old worker must not race a new one's migration.
        ensure_schema(engine, upgrade_if_needed=False)
        store = StateStore(engine)
        role = store.role_holder(SWEEPER_ROLE)
        cluster = store.cluster_id()
    except SwarmError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot reach the database at SWARM_DATABASE_URL: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()
    held = role.holder is not None and role.expires_in > 0
    return {
        "cluster": cluster,
        "sweeper": {
            "holder": role.holder if held else None,
            "expires_in": round(role.expires_in, 1) if held else None,
            "held_for": round(role.held_for, 1) if held else None,
        },
    }


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    queues = set(sender.app.amqp.queues.consume_from) if sender is not None else set()
    try:
        facts = check_node(settings, queues)
    except SwarmError as exc:
        _refuse(str(exc))
    log.info("cluster %s: this worker runs the steps of this deployment only", facts["cluster"])
    # The CLI hands over the pool class (celery.concurrency.thread.TaskPool for -P threads);
    # configuration may give its alias ("threads").
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else str(getattr(pool, "__module__", ""))
    context.configure_pool(int(getattr(sender, "concurrency", 1) or 1), "thread" in pool_name)


def _on_celeryd_init(instance: Any = None, **_: Any) -> None:
    # Before Celery sets up its logging, and before its first warnings (e.g. about running as
    # root): in JSON, those must be JSON lines too, and the start-up banner (not a log line) goes.
    if settings.log_format == "json":
        logs.configure("json")
        if instance is not None:
            instance.quiet = True


def _harden(**_: Any) -> None:
    # `settings` was read when this module was imported; from here on the secrets live only there.
    # In the main process, before the pool forks: pool children inherit the scrubbed environment
    # and the not-dumpable flag. (A handler of its own: tests call _on_worker_init in-process.)
    from swarm.hardening import harden

    harden()


def _on_worker_ready(**_: Any) -> None:
    # Every worker process is a candidate for the cluster's sweeper; one holds the role at a time.
    try:
        sweeper.start(app, settings)
    except Exception:  # the node still runs steps; another process sweeps
        log.exception("could not start this process's sweeper candidate")
    # A threads-pool worker runs its steps in this process: build what they need now rather than
    # on the first step, which would otherwise be late by the build (a prefork parent never runs
    # steps and must not start threads or open connections before it forks).
    if context.pool_runs_steps_in_main_process():
        _build_early()


def _on_process_init(**_: Any) -> None:
    # A forked pool child must build its own engine and heartbeat (brief §6: pooled
    # connections never cross a fork); anything inherited is dropped, not closed. It builds
    # them now, so its first step does not wait for them (nothing connects yet).
    context.after_fork()
    sweeper.after_fork()
    _build_early()


def _build_early() -> None:
    try:
        ctx = context.context()
        ctx.executor()
        ctx.cluster_id  # noqa: B018  (read once now; every step message is checked against it)
    except Exception:  # the first step builds it again and reports the error where it belongs
        log.exception("could not prepare this worker process's step executor")


def _on_process_shutdown(**_: Any) -> None:
    context.shutdown()


def _on_worker_shutting_down(**_: Any) -> None:
    # At the signal, not once the consumer has stopped: a worker on its way out neither keeps
    # nor takes the sweeper role (a sibling process that is stopping too would otherwise take it).
    sweeper.stopping()


def _on_worker_shutdown(**_: Any) -> None:
    sweeper.stop()  # hands the role over at once
    context.shutdown()


def _on_setup_logger(
    logger: logging.Logger | None = None, loglevel: int | None = None, format: str | None = None, **_: Any
) -> None:
    # httpx logs every model call at INFO, drowning Celery's own task lines; keep it for DEBUG.
    if (loglevel or logging.INFO) > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    # Celery has set up its handlers (stderr or --logfile) with its line format; swarm's formatter
    # keeps that format for text and adds the ids (SWARM_LOG_FORMAT, swarm.logs).
    for target in (logger, get_multiprocessing_logger()):
        if target is not None:
            logs.adopt(target, settings.log_format, format or logs.TEXT_FORMAT)


def _on_setup_task_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    # Celery's task logger (celery.task, for get_task_logger) has a text format of its own that
    # only Celery's formatter can fill; in JSON it is dressed like the rest.
    if logger is not None and settings.log_format == "json":
        logs.adopt(logger, "json")


#: The ids bound for the task each thread runs (swarm.step's labels), from task_prerun to
#: task_postrun, so that Celery's own lines about the task (e.g. "succeeded in") carry them too.
#: Keyed by task and thread: one task id may run on two threads at once (a message handed back by
#: a worker of another deployment is a copy with the same id).
_task_ids: dict[tuple[str, int], Token[Mapping[str, str]]] = {}


def _on_task_prerun(task_id: str = "", kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    kw = kwargs or {}
    token = logs.bind(run_id=kw.get("run_id"), agent_id=kw.get("agent_id"), step_id=kw.get("step_id"))
    _task_ids[task_id, threading.get_ident()] = token


def _on_task_postrun(task_id: str = "", **_: Any) -> None:
    token = _task_ids.pop((task_id, threading.get_ident()), None)
    if token is not None:
        logs.unbind(token)


# Connected explicitly (not as decorators) so the handlers keep their type annotations.
signals.celeryd_init.connect(_on_celeryd_init)
signals.worker_init.connect(_on_worker_init)
signals.worker_init.connect(_harden)
signals.after_setup_logger.connect(_on_setup_logger)
signals.after_setup_task_logger.connect(_on_setup_task_logger)
signals.task_prerun.connect(_on_task_prerun)
signals.task_postrun.connect(_on_task_postrun)
signals.worker_ready.connect(_on_worker_ready)
signals.worker_process_init.connect(_on_process_init)
signals.worker_process_shutdown.connect(_on_process_shutdown)
signals.worker_shutting_down.connect(_on_worker_shutting_down)
signals.worker_shutdown.connect(_on_worker_shutdown)
