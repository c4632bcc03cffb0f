"""Retention: old runs are deleted with every row and file, in batches, while other runs go on;
a running run is never deleted; tenants delete only their own."""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

import swarm.cli.retention  # registers the commands
import swarm.cli.runs  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.domain.status import RunStatus
from swarm.runtime import LocalRuntime, run_spec
from swarm.store import retention
from swarm.store.models import AGENTS, ARTIFACTS, DEFS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.store import StateStore
from tests.conftest import make_settings

TABLES = (RUNS, AGENTS, DEFS, MESSAGES, STEPS, EVENTS, ARTIFACTS)
DAY = 86400.0


def rows_of(store: StateStore, run_id: str) -> dict[str, int]:
    with store.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).where((t.c.id if t is RUNS else t.c.run_id) == run_id)).scalar()
            for t in TABLES
        }


@pytest.mark.timeout(300)
def test_pruning_old_runs_deletes_all_their_rows_while_another_run_goes_on(tmp_path, db_url, sim, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 7)  # many small batches, even for small runs
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        old = [rt.submit(run_spec(s, f"old {i} #sim agents=2 tools=3 tool=python scenario=files")) for i in range(3)]
        for run_id in old:
            assert rt.wait(run_id, timeout=120).status == "succeeded"
        recent = rt.submit(run_spec(s, "recent #sim agents=2 tools=1 tool=echo"))
        assert rt.wait(recent, timeout=120).status == "succeeded"
        with store.tx() as conn:  # the old runs ended 40 days ago
            conn.execute(update(RUNS).where(RUNS.c.id.in_(old)).values(finished_at=time.time() - 40 * DAY))
        before = {run_id: rows_of(store, run_id) for run_id in old}
        assert all(n > 0 for t, n in before[old[0]].items() if t != "agent_defs"), before
        assert before[old[0]]["artifacts"] > 0  # the python tool left files

        going = rt.submit(run_spec(s, "going on #sim agents=10 tools=5 tool=echo latency=0.05"))
        dry = store.retention.prune(30 * DAY, [RunStatus.SUCCEEDED], dry_run=True)
        freed = store.retention.prune(30 * DAY, [RunStatus.SUCCEEDED])
        done = rt.wait(going, timeout=120)

    assert sorted(freed.runs) == sorted(old) == sorted(dry.runs)
    assert freed.rows == dry.rows
    assert freed.rows == {t.name: sum(b[t.name] for b in before.values()) for t in TABLES}
    assert freed.file_bytes == dry.file_bytes > 0
    assert freed.data_bytes == dry.data_bytes > 0
    for run_id in old:
        assert set(rows_of(store, run_id).values()) == {0}
    assert rows_of(store, recent)["messages"] > 0  # younger than the cut-off: kept
    assert (done.status, done.subagents, done.tool_calls) == ("succeeded", 10, 50)
    store.engine.dispose()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_running_run_is_not_deleted_and_tenants_delete_only_their_own(tmp_path, sqlite_url, sim, monkeypatch):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with live_api(s) as api, api.client(api.key("tenant-a")) as a, api.client(api.key("tenant-b")) as b:
        run_id = a.post("/v1/runs", json={"task": "t #sim agents=4 tools=30 tool=echo latency=0.2"}).json()["id"]
        refused = a.delete(f"/v1/runs/{run_id}")
        assert refused.status_code == 409 and "cancel it" in refused.json()["message"]
        assert b.delete(f"/v1/runs/{run_id}").status_code == 404
        assert a.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        deleted = a.delete(f"/v1/runs/{run_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["runs"] == [run_id] and deleted.json()["rows"]["runs"] == 1
        assert a.get(f"/v1/runs/{run_id}").status_code == 404
        assert set(rows_of(api.store, run_id).values()) == {0}

        # The CLI, through the server, with a short id.
        other = a.post("/v1/runs", json={"task": "t #sim agents=1 tools=1 tool=echo"}).json()["id"]
        api.wait(other)
        monkeypatch.setenv("SWARM_API_URL", api.url)
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-a"))
        code, out = cli("delete", other[:10], "--json")
        assert code == 0, out
        assert json.loads(out)["runs"] == [other]


def test_prune_refuses_what_it_cannot_mean(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    for args, words in [
        (("--older-than", "0d"), "not an age"),
        (("--older-than", "soon"), "not an age"),
        (("--older-than", "30d", "--status", "running"), "only ended runs"),
    ]:
        code, out = cli("prune", *args, "--json")
        assert code == 3 and words in json.loads(out)["message"], out
    code, out = cli("prune", "--older-than", "30d", "--dry-run", "--json")
    assert code == 0 and json.loads(out) == {
        "runs": [],
        "rows": {},
        "total_rows": 0,
        "file_bytes": 0,
        "data_bytes": 0,
        "dry_run": True,
    }


@pytest.mark.timeout(300)
def test_with_retention_days_the_sweeper_deletes_old_ended_runs_a_few_per_sweep(tmp_path, db_url, sim, caplog):
    """SWARM_RETENTION_DAYS: the elected sweeper deletes ended runs older than that (a backlog a
    few runs per sweep, then not again before the interval), never a running or recent one, and
    says what it freed only when it freed something."""
    from swarm.engine.election import ElectedSweeper
    from swarm.engine.retention import RetentionPass

    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        task = "#sim agents=2 tools=2 tool=python scenario=files"
        ended = [rt.submit(run_spec(s, f"ended {i} {task}")) for i in range(3)]
        for run_id in ended:
            assert rt.wait(run_id, timeout=120).status == "succeeded"
        old, recent = ended[:2], ended[2]
        going = rt.submit(run_spec(s, "going on #sim agents=3 tools=40 tool=echo latency=0.05"))
        with store.tx() as conn:  # the old runs ended 40 days ago; the running one started 40 days ago
            conn.execute(update(RUNS).where(RUNS.c.id.in_(old)).values(finished_at=time.time() - 40 * DAY))
            conn.execute(update(RUNS).where(RUNS.c.id == going).values(created_at=time.time() - 40 * DAY))
        before = sum(sum(rows_of(store, r).values()) for r in old)
        clock = [0.0]
        sweeper = ElectedSweeper(
            store,
            "h:1:a",
            interval=0.05,
            republish_after=60.0,
            dispatch=rt.dispatch,
            retention=RetentionPass(store, 30, interval=3600.0, per_pass=1, clock=lambda: clock[0]),
        )
        caplog.set_level(logging.INFO, logger="swarm.engine.retention")
        sweeper.tick()  # at start: the oldest run
        sweeper.tick()  # the backlog goes on at the next sweep
        gone = [r for r in old if rows_of(store, r)["runs"] == 0]
        sweeper.tick()  # caught up: nothing more (and nothing said)
        clock[0] += 1800.0
        sweeper.tick()  # not due again before the interval
        lines = [r.getMessage() for r in caplog.records if r.name == "swarm.engine.retention"]
        assert rt.wait(going, timeout=120).status == "succeeded"
        sweeper.stop()

    assert sorted(gone) == sorted(old)
    for run_id in old:
        assert set(rows_of(store, run_id).values()) == {0}
    assert rows_of(store, recent)["messages"] > 0
    assert rows_of(store, going)["messages"] > 0
    assert len(lines) == 2 and all(line.startswith("retention (30 days): deleted 1 run(s)") for line in lines), lines
    freed = [int(line.split(", ")[1].split()[0]) for line in lines]
    assert sum(freed) == before
    store.engine.dispose()


def test_the_embedded_runtime_prunes_with_retention_days(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    store = StateStore.from_url(sqlite_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
        assert rt.wait(run_id, timeout=60).status == "succeeded"
    with store.tx() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(finished_at=time.time() - 8 * DAY))
    with LocalRuntime(make_settings(tmp_path, sqlite_url, sim.url, retention_days=7, sweep_interval=0.1), store=store):
        deadline = time.monotonic() + 30
        while rows_of(store, run_id)["runs"] and time.monotonic() < deadline:
            time.sleep(0.1)
    assert set(rows_of(store, run_id).values()) == {0}
    store.engine.dispose()


@pytest.mark.timeout(600)
def test_pruning_while_a_w1_runs_leaves_it_unaffected_and_reports_rows_and_bytes_freed(tmp_path, pg_url, sim):
    """The benchmark's W1 (100 subagents x 15 tool calls) runs while thousands of old rows and
    their files are deleted in small batches: it finishes exactly as it would alone."""
    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        old = [rt.submit(run_spec(s, f"old {i} #sim agents=20 tools=5 tool=echo")) for i in range(4)]
        old.append(rt.submit(run_spec(s, "old files #sim agents=2 tools=2 tool=python scenario=files")))
        for run_id in old:
            assert rt.wait(run_id, timeout=240).status == "succeeded"
        with store.tx() as conn:
            conn.execute(update(RUNS).where(RUNS.c.id.in_(old)).values(finished_at=time.time() - 40 * DAY))
        before = {run_id: rows_of(store, run_id) for run_id in old}
        w1 = rt.submit(run_spec(s, "W1 #sim agents=100 tools=15 tool=echo"))
        time.sleep(1.0)  # W1 is well under way
        assert store.run_status(w1) == "running"
        started = time.monotonic()
        freed = store.retention.prune(30 * DAY, [RunStatus.SUCCEEDED])
        took = time.monotonic() - started
        still_running = store.run_status(w1) == "running"
        done = rt.wait(w1, timeout=480)

    total = sum(freed.rows.values())
    print(
        f"\npruned {len(freed.runs)} runs while W1 ran: {total} rows, {freed.data_bytes} bytes of data, "
        f"{freed.file_bytes} file bytes in {took:.2f} s"
    )
    assert still_running  # the deletion overlapped the W1
    assert sorted(freed.runs) == sorted(old)
    assert total == sum(sum(b.values()) for b in before.values()) > 2000
    assert freed.file_bytes > 0 and freed.data_bytes > 50 * total  # every row holds at least a few ids
    for run_id in old:
        assert set(rows_of(store, run_id).values()) == {0}
    assert (done.status, done.subagents, done.tool_calls) == ("succeeded", 100, 1500)
    assert done.result.startswith("Summary of 100 subagent reports: 100 ok, 0 errors")
    assert sim.stats()["duplicates"] == 0
    store.engine.dispose()
