"""/metrics' step figures come from maintained totals plus the running runs' steps, and always
equal what a scan of every step would count: after runs end, after a resume and a delete."""

from __future__ import annotations

import time

from sqlalchemy import select

from swarm.runtime import LocalRuntime, run_spec
from swarm.store import step_stats
from swarm.store.models import METRIC_TOTALS
from swarm.store.store import StateStore
from tests.conftest import make_settings


def _scanned(store: StateStore) -> dict[str, object]:
    """The step figures as the old /metrics computed them: one scan of every step."""
    with store.read() as conn:
        figures = step_stats.aggregate(conn)
    return {
        "steps": step_stats.step_counts(figures),
        "step_latency": step_stats.histograms(figures, "duration"),
        "queue_wait": step_stats.histograms(figures, "wait"),
    }


def _served(store: StateStore) -> dict[str, object]:
    snap = store.metrics_snapshot()
    return {k: snap[k] for k in ("steps", "step_latency", "queue_wait")}


def _same(a: dict, b: dict) -> None:
    assert a["steps"] == b["steps"]
    for series in ("step_latency", "queue_wait"):
        assert a[series].keys() == b[series].keys()
        for kind in a[series]:
            x, y = a[series][kind], b[series][kind]
            assert (x["count"], x["buckets"]) == (y["count"], y["buckets"]), (series, kind)
            assert abs(x["sum"] - y["sum"]) < 1e-6 * max(1.0, abs(y["sum"]))


def test_metrics_step_figures_equal_a_full_scan_through_a_runs_life(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store) as rt:
        done = rt.wait(rt.submit(run_spec(s, "a #sim agents=3 tools=2 tool=echo")), timeout=120)
        assert done.status == "succeeded"
        slow = rt.submit(run_spec(s, "b #sim agents=4 tools=3 tool=echo latency=0.2"))
        while store.run_summary(slow).llm_calls < 3:
            time.sleep(0.05)
        assert store.cancel_run(slow)
        store.create_run(run_spec(s, "left ready"))  # a running run: its step is counted live
        with store.read() as conn:
            assert conn.execute(select(METRIC_TOTALS)).all()  # the ended runs were added
        _same(_served(store), _scanned(store))
        assert store.metrics_snapshot()["runs"] == {"succeeded": 1, "cancelled": 1, "running": 1}

        # Re-opened (not dispatched yet, so nothing moves): its figures leave the totals and its
        # steps are counted live again.
        refs = store.resume_run(slow)
        _same(_served(store), _scanned(store))
        rt.dispatch(refs)
        assert rt.wait(slow, timeout=120).status == "succeeded"
        _same(_served(store), _scanned(store))

    store.retention.delete_run(done.id)
    _same(_served(store), _scanned(store))
    assert sum(n for _, _, n in store.metrics_snapshot()["steps"]) > 0
    store.engine.dispose()
