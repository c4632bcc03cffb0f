"""The event stream (SSE) on PostgreSQL: resumable with Last-Event-ID, and never skipping an
event whose transaction commits after a later one (the out-of-order commit trap)."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import pytest
from sqlalchemy import insert, text

from swarm.api.testing import live_api
from swarm.runs.remote import parse_sse
from swarm.runtime import run_spec
from swarm.store.models import Event
from tests.conftest import make_settings


class Reader(threading.Thread):
    """Reads one SSE connection on a thread; events land on ``events`` as they arrive."""

    def __init__(self, url: str, key: str, run_id: str, last_event_id: int = 0, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.limit = limit
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id:
            headers["Last-Event-ID"] = str(last_event_id)
        self.client = httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0, read=60.0))
        self.path = f"/v1/runs/{run_id}/events"
        self.events: queue.Queue[dict] = queue.Queue()
        self.ended = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.path) as resp:
                resp.raise_for_status()
                for n, e in enumerate(parse_sse(resp.iter_lines()), 1):
                    self.events.put(e)
                    if n == self.limit:
                        break  # hang up mid-stream, as a flaky network would
        finally:
            self.client.close()
            self.ended.set()

    def take(self, n: int, timeout: float = 10.0) -> list[dict]:
        return [self.events.get(timeout=timeout) for _ in range(n)]

    def close(self) -> None:
        self.ended.wait(10)


@pytest.fixture
def api(tmp_path, pg_url, sim):
    # republish_after: keep the sweeper off runs this test creates without dispatching them.
    with live_api(make_settings(tmp_path, pg_url, sim.url, republish_after=600.0)) as a:
        yield a


def test_reconnecting_with_last_event_id_misses_nothing(api):
    key = api.key()
    with api.client(key) as c:
        run_id = c.post("/v1/runs", json={"task": "sse #sim agents=8 tools=3 tool=echo latency=0.05"}).json()["id"]
    seen: list[dict] = []
    # Drop the connection after a few events, over and over, while the run is busy.
    for n in (1, 3, 7, 2, 11, 5):
        r = Reader(api.url, key, run_id, seen[-1]["id"] if seen else 0, limit=n)
        r.close()
        while not r.events.empty():
            seen.append(r.events.get())
        time.sleep(0.05)
    r = Reader(api.url, key, run_id, seen[-1]["id"] if seen else 0)
    assert r.ended.wait(30), "the stream should end once the run is over"
    while not r.events.empty():
        seen.append(r.events.get())
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)), "no event twice, and in order"
    assert api.store.run_summary(run_id).status == "succeeded"
    expected = api.store.events_since(run_id, 0, limit=100_000)
    assert ids == [e["id"] for e in expected]
    assert [e["type"] for e in seen] == [e["type"] for e in expected]
    assert "run_done" in [e["type"] for e in seen[-3:]]


def test_an_event_committed_late_is_delivered_in_order(api):
    """Transaction A takes id n and commits AFTER transaction B's n+1: readers must wait for n.

    Each transaction takes its transaction id before it draws an event id, as every swarm
    transaction that adds an event does (it writes other rows first)."""
    key = api.key()
    run_id, _ = api.store.create_run(run_spec(api.settings, "gap probe", tenant="tenant-a"))
    first = Reader(api.url, key, run_id)
    start = first.take(1)[0]  # run_created
    engine = api.store.engine

    def event(conn, n):
        conn.execute(text("SELECT pg_current_xact_id()"))  # takes a transaction id, like a first write
        return conn.execute(
            insert(Event)
            .values(run_id=run_id, ts=time.time(), type="probe", agent_id=None, step_id=None, data={"n": n})
            .returning(Event.id)
        ).scalar_one()

    slow = engine.connect()
    slow_tx = slow.begin()
    low = event(slow, 1)  # allocated first, still invisible
    with engine.begin() as conn:
        high = event(conn, 2)  # allocated second, committed first
    assert high > low
    # The reader sees nothing while `low` may still commit (well under the 2 s give-up).
    with pytest.raises(queue.Empty):
        first.events.get(timeout=0.8)
    slow_tx.commit()
    slow.close()
    got = first.take(2, timeout=5)
    assert [e["id"] for e in got] == [low, high]
    # A client that had only seen run_created and reconnects gets both too.
    second = Reader(api.url, key, run_id, start["id"])
    assert [e["id"] for e in second.take(2)] == [low, high]
    # A gap that never fills (rolled back) is recognised as soon as its writer has ended.
    lost = engine.connect()
    lost_tx = lost.begin()
    event(lost, 3)
    with engine.begin() as conn:
        after = event(conn, 4)
    t0 = time.monotonic()
    lost_tx.rollback()
    lost.close()
    assert first.take(1, timeout=6)[0]["id"] == after
    assert time.monotonic() - t0 < 2.0, "well before the 10 s backstop"
    api.store.cancel_run(run_id)  # ends both streams
    first.close()
    second.close()
    assert first.ended.is_set() and second.ended.is_set()


def test_the_stream_of_a_finished_run_replays_and_ends(api):
    key = api.key()
    with api.client(key) as c:
        run_id = c.post("/v1/runs", json={"task": "done #sim agents=2 tools=1 tool=echo"}).json()["id"]
        api.wait(run_id)
        body = c.get(f"/v1/runs/{run_id}/events").text
        lines = body.splitlines()
        assert lines[0] == "retry: 1000"
        assert body.endswith("event: end\ndata: {}\n\n"), "a complete stream says so"
        ids = [int(x.removeprefix("id: ")) for x in lines if x.startswith("id: ")]
        assert ids == [e["id"] for e in api.store.events_since(run_id, 0, 10_000)]
        # Resuming after the last event of a finished run: no event, just the end.
        rest = c.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(ids[-1])}).text
        assert "id: " not in rest and rest.endswith("event: end\ndata: {}\n\n")
        half = ids[len(ids) // 2]
        tail = c.get(f"/v1/runs/{run_id}/events", params={"after": half}).text
        assert [int(x[4:]) for x in tail.splitlines() if x.startswith("id: ")] == [i for i in ids if i > half]
