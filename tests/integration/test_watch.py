"""`swarm watch`: follows a live run from its event stream, locally or through a server."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import swarm.cli.runs  # registers the commands
import swarm.cli.server  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.cli.live import LiveRun
from tests.conftest import make_settings


@pytest.fixture
def api(tmp_path, pg_url, sim, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", pg_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.delenv("SWARM_API_URL", raising=False)
    with live_api(make_settings(tmp_path, pg_url, sim.url)) as a:
        monkeypatch.setenv("SWARM_API_KEY", a.key())
        yield a


def submit(api, task):
    with api.client(os.environ["SWARM_API_KEY"]) as c:
        return c.post("/v1/runs", json={"task": task}).json()["id"]


@pytest.mark.parametrize("where", ["local", "server"])
def test_watch_json_prints_every_event_of_a_live_run(api, where):
    run_id = submit(api, "watch #sim agents=5 tools=3 tool=echo latency=0.1")
    extra = ["--api", api.url] if where == "server" else []
    result = CliRunner().invoke(app, ["watch", run_id, "--json", *extra])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert api.store.run_summary(run_id).status == "succeeded"
    assert [e["id"] for e in events] == [e["id"] for e in api.store.events_since(run_id, 0, 10_000)]
    assert events[0]["type"] == "run_created"


def test_watch_view_of_a_run(api):
    run_id = submit(api, "watch view #sim agents=3 tools=2 tool=echo latency=0.1")
    result = CliRunner().invoke(app, ["watch", run_id], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "succeeded" in out and "critical steps" in out and "tool calls" in out and "orchestrator" in out
    summary = api.store.run_summary(run_id)
    assert any(line.split()[:3] == ["critical", "steps", str(summary.critical_steps)] for line in out.splitlines())
    # The same view, folded from the event log alone, agrees with the store on every figure.
    live = LiveRun(api.store.run_summary(run_id))
    for e in api.store.events_since(run_id, 0, 10_000):
        live.apply(e)
    assert live.critical_steps == summary.critical_steps
    assert live.tool_calls == summary.tool_calls
    assert (live.tokens_in, live.tokens_out) == (summary.tokens_in, summary.tokens_out)
    assert {a.status for a in live.agents.values()} == {"succeeded"} and len(live.agents) == 4


def test_watch_of_an_unknown_run(api):
    result = CliRunner().invoke(app, ["watch", "b" * 32])
    assert result.exit_code == 2 and "no run" in result.output
