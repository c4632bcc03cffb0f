"""The Runs service: one interface, and its implementations agree on what they report.

A run executed by an API server (embedded mode) is read back through the server (``RemoteRuns``,
the CLI's client) and straight from the same database (``EmbeddedRuns``): every answer is the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from swarm.api.testing import live_api
from swarm.exceptions import NotFound, StateError
from swarm.runs import RunRequest, open_runs
from swarm.runs.local import ClusterRuns, EmbeddedRuns
from swarm.runs.remote import RemoteRuns
from tests.conftest import REDIS_URL, make_settings


def test_the_server_and_the_database_report_a_run_alike(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with live_api(s) as api, RemoteRuns(api.url, api.key("tenant-a")) as remote:
        run_id = remote.submit(RunRequest(task="t #sim agents=3 tools=2 tool=echo", max_subagents=5))
        done = remote.wait(run_id)
        assert done.status == "succeeded" and done.subagents == 3 and done.max_subagents == 5

        local = EmbeddedRuns(s)
        try:
            assert local.summary(run_id) == done  # one record: the store's is the client's
            assert local.list_runs() == remote.list_runs() == [done]
            assert local.agents(run_id) == remote.agents(run_id)
            assert _records(local.export(run_id)) == _records(remote.export(run_id))
            local_events = [(e["id"], e["type"]) for e in local.events(run_id)]
            assert local_events == [(e["id"], e["type"]) for e in remote.events(run_id)]
            assert "run_done" in {kind for _, kind in local_events}
            tl_local, tl_remote = local.timeline(run_id), remote.timeline(run_id)
            for key in ("run_id", "status", "created_at", "finished_at", "steps"):
                assert tl_local[key] == tl_remote[key], key
            assert len(tl_local["steps"]) >= done.llm_calls + done.tool_calls

            # Moves a finished run does not allow answer alike too.
            assert local.cancel(run_id).changed is remote.cancel(run_id).changed is False
            for runs in (local, remote):
                with pytest.raises(StateError, match="succeeded"):
                    runs.resume(run_id)
        finally:
            local.close()


def _records(lines: Iterator[str]) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in lines]
    records[0].pop("exported_at")  # the header says when it was written
    return records


def test_a_tenant_sees_only_its_own_runs_through_the_service(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with live_api(s) as api, RemoteRuns(api.url, api.key("tenant-b")) as other:
        local = EmbeddedRuns(s)
        try:
            run_id = local.store.create_run(local.spec(RunRequest(task="t", tenant="tenant-a")))[0]
            assert [r.id for r in local.list_runs(scope="tenant-a")] == [run_id]
            assert local.list_runs(scope="tenant-b") == other.list_runs() == []
            with pytest.raises(NotFound):
                local.summary(run_id, scope="tenant-b")
            with pytest.raises(NotFound):
                other.summary(run_id)
        finally:
            local.close()


def test_the_settings_pick_the_implementation(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, "")
    runs = open_runs(s)
    try:
        assert isinstance(runs, EmbeddedRuns) and runs.mode == "embedded"
        # Reads start nothing: no runtime, no built-in simulated model.
        assert runs.list_runs() == [] and runs._runtime is None
    finally:
        runs.close()
    cluster = open_runs(s.model_copy(update={"broker_url": REDIS_URL}))
    try:
        assert isinstance(cluster, ClusterRuns) and cluster.check() is None
    finally:
        cluster.close()
    with_server = s.model_copy(update={"api_url": "http://127.0.0.1:9", "api_key": SecretStr("swk_x_y")})
    remote = open_runs(with_server)
    assert isinstance(remote, RemoteRuns) and remote.where == "http://127.0.0.1:9"
    # A server never hands its runs on to another server.
    served = open_runs(with_server, serving=True)
    try:
        assert isinstance(served, EmbeddedRuns)
    finally:
        served.close()


def test_a_request_sends_only_the_limits_it_sets():
    request = RunRequest(task="t", max_subagents=3, max_wall_seconds=60.0)
    assert request.limits() == {"max_subagents": 3, "max_wall_seconds": 60.0}
