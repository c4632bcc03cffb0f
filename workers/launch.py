"""Which ``celery`` processes a node runs, and a small supervisor for them (``swarm worker``).

One Celery worker has one pool type, and swarm's queues want different ones:

* ``swarm.llm``     threads: model calls (and the database-only orchestration tools) wait on I/O,
                    so one process holds 100+ concurrent calls without 100 processes;
* ``swarm.tool``    prefork: real tools get process isolation.

So a node is up to two workers, each its own process. Each of them is also a candidate for the
cluster's sweeper (workers/sweeper.py): no node needs to be started differently.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from swarm.constants import QUEUE_LLM, QUEUE_TOOL
from swarm.exceptions import InputError

#: Short names accepted by ``--queues``; full queue names work too.
QUEUE_NAMES = {"llm": QUEUE_LLM, "tool": QUEUE_TOOL}
DEFAULT_QUEUES = ("llm", "tool")
#: The queue of the old beat-driven sweeper: accepted and ignored (the sweeper is in every node).
RETIRED_QUEUES = frozenset({"control", "swarm.control"})
RETIRED_NOTE = (
    "the control queue is retired: every `swarm worker` node runs the sweeper now (one elected at a "
    "time through the database), so no node needs --queues control or --beat"
)


def parse_queues(text: str) -> tuple[str, ...]:
    """``"llm,tool"`` → ``("llm", "tool")``; full names (``swarm.llm``) are accepted too. The retired
    ``control`` queue is skipped (:data:`RETIRED_NOTE`), unless it is all there is."""
    reverse = {v: k for k, v in QUEUE_NAMES.items()}
    out: list[str] = []
    retired = False
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name in RETIRED_QUEUES:
            retired = True
            continue
        short = reverse.get(name, name)
        if short not in QUEUE_NAMES:
            raise InputError(f"unknown queue {name!r}: choose from {', '.join(QUEUE_NAMES)} (comma-separated)")
        if short not in out:
            out.append(short)
    if not out:
        if retired:
            raise InputError(
                f"{RETIRED_NOTE}; this node would consume nothing: remove it (e.g. the old `sweeper` service)"
            )
        raise InputError("--queues is empty: choose from " + ", ".join(QUEUE_NAMES))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class NodePlan:
    queues: tuple[str, ...] = DEFAULT_QUEUES
    llm_concurrency: int = 128
    tool_concurrency: int = 2
    #: Node-name prefix; Celery's %h appends the host, so names are unique per machine.
    name: str = ""
    loglevel: str = "INFO"

    def _node(self, role: str) -> str:
        return f"{role}-{self.name}@%h" if self.name else f"{role}@%h"

    def _worker(self, role: str, pool: str, concurrency: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            QUEUE_NAMES[role],
            "-n",
            self._node(role),
            "-l",
            self.loglevel,
            # Mingle and gossip only slow start-up; workers coordinate through Postgres.
            "--without-mingle",
            "--without-gossip",
        ]

    def commands(self) -> list[list[str]]:
        cmds: list[list[str]] = []
        if "llm" in self.queues:
            cmds.append(self._worker("llm", "threads", self.llm_concurrency))
        if "tool" in self.queues:
            cmds.append(self._worker("tool", "prefork", self.tool_concurrency))
        return cmds


def _die_with_parent() -> None:
    # If the supervisor is SIGKILLed its children get SIGTERM (a warm shutdown) instead of
    # running on as orphans. Linux only; elsewhere this is a no-op.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Runs a node's processes; when one exits, stops the rest and exits with its status, so a
    container restart policy (or systemd) restarts the whole node."""

    def __init__(self, commands: Sequence[Sequence[str]], *, grace: float = 60.0) -> None:
        self.commands = [list(c) for c in commands]
        self.grace = grace
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stopping = False

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        # SIGINT becomes SIGTERM (Celery's warm shutdown, idempotent): a terminal's Ctrl-C already
        # reaches every process of the foreground group, and a second SIGINT from here would turn
        # it into a cold shutdown. SIGQUIT (cold: cancel running steps) is passed on as it is.
        forward = signal.SIGTERM if signum == signal.SIGINT else signum
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(forward)

    def run(self) -> int:
        self.start()
        return self.wait()

    def start(self) -> None:
        """Start every process; each gets this process's environment as it is now."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._signal)
        for cmd in self.commands:
            self.procs.append(subprocess.Popen(cmd, preexec_fn=_die_with_parent))  # noqa: PLW1509

    def wait(self) -> int:
        """Until one process exits (or a signal came); then stop the rest. The exit status."""
        done: list[subprocess.Popen[bytes]] = []
        while not done and not self._stopping:
            time.sleep(0.5)
            done = [p for p in self.procs if p.poll() is not None]
        code = 0
        if done and not self._stopping:
            first = done[0]
            # A process killed by a signal (negative status) is a failure too.
            code = first.returncode if first.returncode > 0 else (1 if first.returncode else 0)
            cmd = self.commands[self.procs.index(first)]
            sys.stderr.write(
                f"swarm worker: {' '.join(cmd[3:])[:120]} exited with {first.returncode}; stopping the node\n"
            )
            self._signal(signal.SIGTERM, None)
        deadline = time.monotonic() + self.grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return code


def run_node(plan: NodePlan, started: Callable[[], object] | None = None) -> NoReturn:
    """Run the node in the foreground. A single process is exec'd: then it is the container's
    main process and gets signals directly. Otherwise ``started`` is called once the processes run
    (``swarm worker`` drops its secrets then: its children got them with their environment, and
    each ``celery`` process drops them itself once it has read its settings). Exits with the
    status of the first process that exited (0 after a requested stop)."""
    cmds = plan.commands()
    if len(cmds) == 1:
        os.execv(cmds[0][0], cmds[0])
    supervisor = Supervisor(cmds)
    supervisor.start()
    if started is not None:
        started()
    code = supervisor.wait()
    # Every child has exited: skip the interpreter's teardown of everything imported (~1 s).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
