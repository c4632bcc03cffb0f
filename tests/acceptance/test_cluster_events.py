"""What Flower sees: Celery's own event receiver (the one Flower uses), subscribed before a small
swarm runs on real workers, gets every step from the moment it is sent to the moment it succeeded,
named for what it is (``swarm.llm``, ``swarm.tool.echo``, ...), with an id that starts with its
run's and agent's short ids, and labelled with its run, agent and kind; no housekeeping task
among them. Worker events arrive batched (``task.multi``). The idle workers then stop within a
few seconds of SIGTERM."""

from __future__ import annotations

import ast
import signal
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from celery.events.receiver import EventReceiver
from sqlalchemy import select

from swarm.dispatch.celery import CeleryDispatcher, make_app
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, submit, w1_task, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

AGENTS, TOOLS = 4, 3
#: An idle worker's warm shutdown (was 32 s for a Ctrl-C: the soft shutdown waited out 30 s idle).
IDLE_STOP_BOUND = 8.0
LIFECYCLE = ("task-sent", "task-received", "task-started", "task-succeeded")


class Recorder(EventReceiver):  # type: ignore[misc]
    """Keeps every task event and the size of every message that carried them."""

    def __init__(self, connection: Any, app: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.message_sizes: list[int] = []
        super().__init__(connection, handlers={"*": self.events.append}, app=app)

    def _receive(self, body: Any, message: Any, list: Any = list, isinstance: Any = isinstance) -> None:
        self.message_sizes.append(len(body) if isinstance(body, list) else 1)
        super()._receive(body, message)


@pytest.mark.timeout(180)
def test_flower_sees_every_step_from_sent_to_succeeded_with_its_labels(tmp_path, pg_url, redis_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url, pool_size=2)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    app = make_app(s)  # Flower's own app: only the broker in common with the workers
    with app.connection_for_read() as conn, cluster(tmp_path / "cluster", s) as c:
        recorder = Recorder(conn, app)
        listening = threading.Thread(target=recorder.capture, kwargs={"limit": None, "timeout": None}, daemon=True)
        listening.start()
        node = c.start_node("n0", llm_concurrency=8)
        time.sleep(1.0)  # subscribed before anything is sent
        run_id = submit(store, dispatcher, s, w1_task(AGENTS, TOOLS), agents=AGENTS, tools=TOOLS)
        wait_done(store, run_id, 120, c)
        with store.read() as db:
            rows = db.execute(select(Step.id, Step.kind, Step.agent_id, Step.tool_name).where(Step.run_id == run_id))
            steps = {r.id: r for r in rows}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
            for e in recorder.events:
                seen[e.get("uuid", "")][e["type"]] = e
            sent = {
                ast.literal_eval(ev["kwargs"])["step_id"]: u
                for u, es in seen.items()
                if (ev := es.get("task-sent")) and str(ev.get("name", "")).startswith(("swarm.llm", "swarm.tool"))
            }
            if set(sent) >= set(steps) and all(set(LIFECYCLE) <= set(seen[sent[sid]]) for sid in steps):
                break
            time.sleep(0.2)
        recorder.should_stop = True
        listening.join(timeout=10)  # before its connection closes, or it would reconnect
        dispatcher.close()
        store.engine.dispose()
        # Idle now: a warm shutdown (SIGTERM) ends each worker within a few seconds.
        t0 = time.monotonic()
        for p in node:
            p.signal(signal.SIGTERM)
        stopped = []
        for p in node:
            p.popen.wait(timeout=30)
            stopped.append(time.monotonic() - t0)
    app.close()
    print(f"\n[events] idle workers stopped {[round(t, 2) for t in stopped]} s after SIGTERM")
    assert max(stopped) <= IDLE_STOP_BOUND
    assert all(p.popen.returncode == 0 for p in node)

    assert set(sent) >= set(steps), f"{len(set(steps) - set(sent))} of {len(steps)} steps never shown as sent"
    names = {e.get("name") for e in recorder.events if e["type"] == "task-sent"}
    assert not {n for n in names if not str(n).startswith(("swarm.llm", "swarm.tool"))}, names  # no sweep task
    for step_id, row in steps.items():
        events = seen[sent[step_id]]
        missing = [t for t in LIFECYCLE if t not in events]
        assert not missing, f"step {step_id} ({row.kind}): Flower never saw {missing}"
        expected = "swarm.llm" if row.kind == "llm" else f"swarm.tool.{row.tool_name}"
        assert events["task-sent"]["name"] == events["task-received"]["name"] == expected
        assert sent[step_id].startswith(f"{run_id[:8]}-{row.agent_id[:8]}-"), sent[step_id]
        labels = ast.literal_eval(events["task-received"]["kwargs"])
        assert (labels["run_id"], labels["agent_id"], labels["kind"]) == (run_id, row.agent_id, str(row.kind))
        # The worker's events in order (task-sent is stamped after the message is already queued).
        times = [events[t]["timestamp"] for t in LIFECYCLE[1:]]
        assert times == sorted(times), f"step {step_id}: events out of order {times}"
    # The workers' received/started/succeeded events travel several to a message.
    assert max(recorder.message_sizes) > 1
