"""A node started the normal way (`swarm worker`: a supervisor and its celery workers) keeps no
secret where tool code could read it, and obeys nothing sent over the broker but swarm's tasks:
Celery's remote control (ping, inspect, rate_limit, shutdown, ...) gets no reply and changes
nothing unless SWARM_CELERY_REMOTE_CONTROL=true."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.dispatch.celery import STEP_TASK, CeleryDispatcher, make_app
from swarm.store.store import StateStore
from tests.acceptance.cluster import Proc, children_of, cluster, submit, w1_task, wait_done
from tests.conftest import make_settings
from tests.procfs import needs_root, read_as, without_ptrace_cap

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LLM_KEY = "sk-llm-secret-node-4e1b77"


def _celery_tree(supervisor: int) -> list[int]:
    """The node's celery processes: the workers the supervisor started and their pool processes."""

    def is_celery(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return False

    mains = [p for p in children_of(supervisor) if is_celery(p)]
    return mains + [c for m in mains for c in children_of(m) if is_celery(c)]


@needs_root()
@pytest.mark.timeout(240)
def test_a_node_keeps_no_secret_and_ignores_remote_control(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=2)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    control = make_app(s)  # anyone with broker access
    with cluster(tmp_path / "cluster", s, SWARM_LLM_API_KEY=LLM_KEY) as c:
        log = c.root / "node.log"
        with log.open("ab") as out:
            # Without CAP_SYS_PTRACE, like the reader below: then only the dumpable flag protects it.
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "swarm",
                    "worker",
                    "--queues",
                    "llm,tool",
                    "--llm-concurrency",
                    "8",
                    "--tool-concurrency",
                    "2",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=c.root,
                env=c.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=without_ptrace_cap,  # noqa: PLW1509
            )
        c.procs.append(node := Proc("node", popen, log))

        # The workers got their settings although the supervisor dropped them: steps run.
        run_id = submit(store, dispatcher, s, w1_task(3, 2), agents=3, tools=2)
        assert wait_done(store, run_id, 120, c).status == "succeeded"

        tree = _celery_tree(node.pid)
        assert len(tree) >= 4, c.logs()  # llm and tool workers, the tool worker's 2 pool processes
        for pid in (node.pid, *tree):
            environ = Path(f"/proc/{pid}/environ").read_bytes()  # as root: still readable
            for secret in (LLM_KEY.encode(), b"SWARM_DATABASE_URL=", b"SWARM_BROKER_URL=", s.database_url.encode()):
                assert secret not in environ, (pid, secret)
            assert b"SWARM_LLM_BASE_URL=" in environ  # only secrets are dropped
            assert read_as(pid, "ptrace")["mem"] == "denied", pid  # the same user cannot read its memory

        # Remote control over the broker: no worker answers, none obeys.
        assert control.control.ping(timeout=1.0) == []
        assert control.control.rate_limit(STEP_TASK, "1/h", reply=True, timeout=1.0) == []
        assert control.control.inspect(timeout=1.0).active() is None
        run_id = submit(store, dispatcher, s, w1_task(3, 2), agents=3, tools=2)
        assert wait_done(store, run_id, 60, c).status == "succeeded"  # at 1/h it would not be
        c.check_alive()

        # The switch works: a worker with SWARM_CELERY_REMOTE_CONTROL=true answers a ping.
        c.start_node("rc", queues=("llm",), llm_concurrency=2, env={"SWARM_CELERY_REMOTE_CONTROL": "true"})
        deadline = time.monotonic() + 60
        while not (replies := control.control.ping(timeout=1.0)):
            assert time.monotonic() < deadline, c.logs()
        assert [name.split("@")[0] for r in replies for name in r] == ["llm-rc"]
    control.close()
    dispatcher.close()
    store.engine.dispose()
