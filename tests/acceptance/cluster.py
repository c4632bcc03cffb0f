"""A real cluster on this machine for tests and benchmarks: ``celery`` worker processes started
with subprocess (each in its own session, so a whole process tree can be killed; every worker
process is a candidate for the cluster's sweeper, elected through the database), and the checks
every cluster test makes.

Everything started here is killed by :meth:`Cluster.close`, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from swarm.config import Settings
from swarm.constants import SWEEPER_ROLE
from swarm.dispatch.celery import CeleryDispatcher
from swarm.domain.status import RUN_TERMINAL, StepKind, StepStatus
from swarm.exceptions import StoreUnavailable
from swarm.runtime import run_spec
from swarm.store.models import Event, Message, Step
from swarm.store.store import StateStore
from swarm.store.types import RunSummary
from workers.launch import NodePlan

W1_TASK = (
    "Research task W1: split the work across {agents} parallel subagents, each making {tools} tool calls, "
    "then summarise. #sim agents={agents} tools={tools} tool={tool} latency={latency}{extra}"
)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; Linux)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie is dead, just not yet reaped


@dataclass
class Proc:
    """One started process (a celery worker main process or beat)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[int]:
        """The main process and its pool children."""
        return [self.pid, *children_of(self.pid)]

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class Cluster:
    """Worker processes sharing one database, one Redis and one model endpoint."""

    root: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    loglevel: str = "WARNING"

    @classmethod
    def for_settings(cls, root: Path, settings: Settings, **extra_env: str) -> Cluster:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "CELERY_", "FLOWER_"))}
        env.update(
            {
                "SWARM_DATABASE_URL": settings.database_url,
                "SWARM_BROKER_URL": settings.broker_url,
                "SWARM_LLM_BASE_URL": settings.llm_base_url,
                "SWARM_HOME": str(root / "home"),
                "SWARM_LLM_MAX_RETRIES": str(settings.llm_max_retries),
                "PYTHONUNBUFFERED": "1",
                "SWARM_LEASE_SECONDS": str(settings.lease_seconds),
                "SWARM_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
                "SWARM_SWEEP_INTERVAL": str(settings.sweep_interval),
                "SWARM_REPUBLISH_AFTER": str(settings.republish_after),
            }
        )
        env.update(extra_env)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, env)

    # ------------------------------------------------------------ processes

    def _spawn(
        self, name: str, cmd: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Proc:
        log = self.root / f"{name}.log"
        workdir = cwd or self.root
        workdir.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                list(cmd),
                cwd=workdir,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_node(
        self,
        name: str,
        *,
        queues: Iterable[str] = ("llm", "tool"),
        llm_concurrency: int = 64,
        tool_concurrency: int = 2,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> list[Proc]:
        """What ``swarm worker --queues ...`` runs on one machine, as separately killable processes."""
        plan = NodePlan(
            queues=tuple(queues),
            llm_concurrency=llm_concurrency,
            tool_concurrency=tool_concurrency,
            name=name,
            loglevel=self.loglevel,
        )
        procs = []
        for cmd in plan.commands():
            role = cmd[cmd.index("-Q") + 1].rsplit(".", 1)[-1]
            procs.append(self._spawn(f"{name}-{role}", cmd, cwd=cwd, env=env))
        return procs

    def sweeper_pid(self, store: StateStore) -> int | None:
        """The pid of the worker process holding the cluster's sweeper role now, if any."""
        role = _retrying(store.role_holder, SWEEPER_ROLE)
        if role.holder is None or role.expires_in <= 0:
            return None
        return int(role.holder.split(":")[1])

    def wait_sweeper(self, store: StateStore, among: Iterable[Proc], timeout: float = 30.0) -> Proc:
        """The process among ``among`` that holds (or takes) the sweeper role within ``timeout``."""
        procs = list(among)
        deadline = time.monotonic() + timeout
        while True:
            pid = self.sweeper_pid(store)
            found = [p for p in procs if p.pid == pid]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no sweeper among {[p.name for p in procs]} (holder pid {pid})\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, procs: Iterable[Proc], *, timeout: float = 40.0) -> None:
        """Graceful stop (SIGTERM = Celery warm shutdown), then SIGKILL whatever is left."""
        procs = list(procs)
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill_group()

    def check_alive(self) -> None:
        dead = [p for p in self.procs if not p.running() and p.popen.returncode not in (0, -9, -15)]
        if dead:
            raise AssertionError(
                "cluster process(es) died unexpectedly:\n"
                + "\n".join(f"--- {p.name} (exit {p.popen.returncode})\n{p.tail()}" for p in dead)
            )

    def close(self) -> None:
        for p in self.procs:
            p.kill_group()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.procs)


@contextlib.contextmanager
def cluster(root: Path, settings: Settings, **extra_env: str) -> Iterator[Cluster]:
    c = Cluster.for_settings(root, settings, **extra_env)
    try:
        yield c
    finally:
        c.close()


# ------------------------------------------------------------------ runs


def w1_task(agents: int, tools: int, *, tool: str = "echo", latency: float = 0.0, extra: str = "") -> str:
    return W1_TASK.format(agents=agents, tools=tools, tool=tool, latency=latency, extra=f" {extra}" if extra else "")


def submit(
    store: StateStore, dispatcher: CeleryDispatcher, settings: Settings, task: str, *, agents: int, tools: int
) -> str:
    spec = run_spec(settings, task, max_subagents=max(agents, 1), max_tool_calls=max(agents * tools, 1))
    run_id, refs = store.create_run(spec)
    dispatcher.dispatch(refs)
    return run_id


def _retrying(fn: Any, *args: Any, attempts: int = 60) -> Any:
    """Reads in tests ride out database faults the tests themselves inject."""
    for i in range(attempts):
        try:
            return fn(*args)
        except StoreUnavailable:
            if i == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def wait_done(store: StateStore, run_id: str, timeout: float, cluster: Cluster | None = None) -> RunSummary:
    deadline = time.monotonic() + timeout
    while True:
        # Polls the status alone: a live summary computes critical steps over every agent, and the
        # benchmarks share these cores with the cluster they measure.
        if _retrying(store.run_status, run_id) in RUN_TERMINAL:
            summary: RunSummary = _retrying(store.run_summary, run_id)
            return summary
        if time.monotonic() > deadline:
            logs = cluster.logs() if cluster else ""
            s = _retrying(store.run_summary, run_id)
            raise AssertionError(f"run {run_id} still {s.status} after {timeout} s: {s}\n{logs}")
        if cluster is not None:
            cluster.check_alive()
        time.sleep(0.25)


def finished_steps(store: StateStore, run_id: str) -> int:
    def q() -> int:
        with store.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(Step)
                    .where(Step.run_id == run_id, Step.status == StepStatus.SUCCEEDED)
                ).scalar_one()
            )

    return int(_retrying(q))


def wait_progress(store: StateStore, run_id: str, at_least: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := finished_steps(store, run_id)) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id}: only {n} steps done after {timeout} s (wanted {at_least})")
        time.sleep(0.1)
    return n


def first_commit_after(store: StateStore, run_id: str, t: float, timeout: float = 60.0) -> float:
    """Seconds from ``t`` to the first step committed after it (an llm_done/tool_done event)."""
    deadline = time.monotonic() + timeout
    while True:

        def q() -> float | None:
            with store.read() as conn:
                return conn.execute(
                    select(func.min(Event.ts)).where(
                        Event.run_id == run_id,
                        Event.ts > t,
                        Event.type.in_(["llm_done", "tool_done", "agent_started", "subagent_defined"]),
                    )
                ).scalar()

        ts = _retrying(q)
        if ts is not None:
            return float(ts) - t
        if time.monotonic() > deadline:
            raise AssertionError(f"no step committed within {timeout} s after the fault")
        time.sleep(0.1)


def steps_owned_by(store: StateStore, run_id: str, pids: Iterable[int]) -> list[str]:
    """Running steps whose lease holder is one of ``pids`` (owner = host:pid:nonce)."""
    wanted = {str(p) for p in pids}
    with store.read() as conn:
        rows = conn.execute(
            select(Step.id, Step.owner).where(Step.run_id == run_id, Step.status == StepStatus.RUNNING)
        ).all()
    return [r.id for r in rows if r.owner and r.owner.split(":")[1] in wanted]


def wait_steps_done(store: StateStore, step_ids: Sequence[str], t0: float, timeout: float = 60.0) -> float:
    """Seconds from ``t0`` until every step in ``step_ids`` has left RUNNING/READY for good."""
    deadline = time.monotonic() + timeout
    while True:

        def q() -> int:
            with store.read() as conn:
                return int(
                    conn.execute(
                        select(func.count())
                        .select_from(Step)
                        .where(Step.id.in_(list(step_ids)), Step.status.in_([StepStatus.RUNNING, StepStatus.READY]))
                    ).scalar_one()
                )

        if not step_ids or _retrying(q) == 0:
            return time.time() - t0
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(step_ids)} stranded steps not recovered within {timeout} s")
        time.sleep(0.1)


def owners_pids(store: StateStore, run_id: str) -> set[int]:
    with store.read() as conn:
        owners = {o for (o,) in conn.execute(select(Step.owner).distinct().where(Step.run_id == run_id)) if o}
    return {int(o.split(":")[1]) for o in owners}


def verify_run(
    store: StateStore,
    sim_log: list[dict[str, Any]],
    sim_by_run: int,
    run_id: str,
    *,
    agents: int,
    tools: int,
    in_flight_at_crash: Collection[str] = (),
) -> RunSummary:
    """The exactly-once invariants every cluster test asserts, whatever fault it injected.

    Only a step that was in flight on a SIGKILLed worker may have had its model request served
    twice (its answer died with the process before it was committed); ``in_flight_at_crash``
    names those steps. Every other request, in particular every committed one, is served once.
    """
    s: RunSummary = _retrying(store.run_summary, run_id)
    assert s.status == "succeeded", s
    llm_calls = 3 + agents * (tools + 1)
    assert (s.subagents, s.tool_calls, s.llm_calls, s.critical_steps) == (
        agents,
        agents * tools,
        llm_calls,
        3 + tools + 1,
    ), s
    served = [e for e in sim_log if e["status"] == 200]
    by_key = Counter(e["key"] for e in served)
    repeated = {e["step_id"] for e in served if by_key[e["key"]] > 1}
    unexpected = repeated - set(in_flight_at_crash)
    if unexpected:
        with store.read() as conn:
            rows = conn.execute(
                select(Step.id, Step.kind, Step.status, Step.attempt, Step.fence, Step.owner).where(
                    Step.id.in_(list(unexpected))
                )
            ).all()
        times = {sid: [round(e["t"], 2) for e in served if e["step_id"] == sid] for sid in unexpected}
        raise AssertionError(
            f"{len(unexpected)} model request(s) served twice for run {run_id}: "
            f"{[tuple(r) for r in rows]} served at {times}"
        )
    assert len(by_key) == llm_calls, (len(by_key), llm_calls)
    assert len(served) == sim_by_run, (len(served), sim_by_run)
    assert len(served) - llm_calls <= len(in_flight_at_crash)
    with store.read() as conn:
        open_steps = conn.execute(
            select(func.count())
            .select_from(Step)
            .where(Step.run_id == run_id, Step.status.not_in([StepStatus.SUCCEEDED]))
        ).scalar_one()
        tool_steps = dict(
            conn.execute(
                select(Step.agent_id, func.count())
                .where(Step.run_id == run_id, Step.kind == StepKind.TOOL, Step.status == StepStatus.SUCCEEDED)
                .group_by(Step.agent_id)
            ).all()
        )
        tool_msgs = dict(
            conn.execute(
                select(Message.agent_id, func.count())
                .where(Message.run_id == run_id, Message.role == "tool")
                .group_by(Message.agent_id)
            ).all()
        )
        distinct_calls = conn.execute(
            select(func.count()).select_from(
                select(Message.agent_id, Message.tool_call_id)
                .where(Message.run_id == run_id, Message.role == "tool")
                .distinct()
                .subquery()
            )
        ).scalar_one()
    assert open_steps == 0, f"{open_steps} steps of the run are not succeeded"
    assert tool_msgs == tool_steps, "a tool result was recorded twice (or lost)"
    assert distinct_calls == sum(tool_msgs.values()), "a tool call has two results"
    return s
