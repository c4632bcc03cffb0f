"""Trajectory export: complete, ordered JSONL that adds up (locally, over HTTP and from the CLI)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import swarm.cli.runs  # registers the commands
import swarm.cli.server  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from tests.conftest import make_settings


@pytest.fixture
def api(tmp_path, sqlite_url, sim):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as a:
        yield a


def test_export_has_every_message_and_step_and_adds_up(api, tmp_path, monkeypatch):
    key = api.key()
    with api.client(key) as c:
        run_id = c.post("/v1/runs", json={"task": "export #sim agents=4 tools=3 tool=echo"}).json()["id"]
        summary = api.wait(run_id)
        resp = c.get(f"/v1/runs/{run_id}/export")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in resp.text.splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds == ["run"] + ["agent"] * 5 + ["stage"] * kinds.count("stage")

    header = records[0]
    assert header["format"] == "swarm.trajectory.v1"
    assert {k: header[k] for k in summary if k != "wall_seconds"} == {
        k: v for k, v in summary.items() if k != "wall_seconds"
    }
    agents = [r for r in records if r["type"] == "agent"]
    assert agents[0]["name"] == "orchestrator" and agents[0]["parent_id"] is None
    assert {a["parent_id"] for a in agents[1:]} == {agents[0]["id"]}
    rows = api.store.storage_rows(run_id)
    assert sum(len(a["messages"]) for a in agents) == rows["messages"]
    assert sum(len(a["steps"]) for a in agents) == rows["steps"] == header["steps"]

    worker = agents[1]
    roles = [m["role"] for m in worker["messages"]]
    assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
    assert worker["messages"][2]["reasoning_content"]  # Kimi's thinking is kept
    assert worker["messages"][2]["tool_calls"][0]["function"]["name"] == "echo"
    tool_steps = [s for s in worker["steps"] if s["kind"] == "tool"]
    assert len(tool_steps) == 3 and all(s["result"] is not None and s["duration"] >= 0 for s in tool_steps)
    llm_steps = [s for s in worker["steps"] if s["kind"] == "llm"]
    assert len(llm_steps) == worker["step_count"] == 4
    assert all(s["tokens_in"] > 0 and s["started_at"] <= s["finished_at"] for s in llm_steps)
    assert worker["result"]

    stages = [r for r in records if r["type"] == "stage"]
    assert [s["turn"] for s in stages] == [0, 1, 2]
    launch = stages[1]
    assert len(launch["subagents"]) == 4 and launch["critical_steps"] == 1 + 4
    assert sum(s["critical_steps"] for s in stages) == summary["critical_steps"] == 7

    # The CLI writes the same records, locally and through the server.
    monkeypatch.setenv("SWARM_DATABASE_URL", api.settings.db_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    for extra in ([], ["--api", api.url]):
        monkeypatch.setenv("SWARM_API_KEY", key)
        out = tmp_path / f"export{len(extra)}.jsonl"
        result = CliRunner().invoke(app, ["export", run_id, "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        mine = [json.loads(line) for line in out.read_text().splitlines()]
        volatile = {"exported_at", "wall_seconds"}
        assert [{k: v for k, v in r.items() if k not in volatile} for r in mine] == [
            {k: v for k, v in r.items() if k not in volatile} for r in records
        ]


def test_export_of_an_unknown_run(api, tmp_path, monkeypatch):
    with api.client(api.key()) as c:
        resp = c.get(f"/v1/runs/{'a' * 32}/export")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    monkeypatch.setenv("SWARM_DATABASE_URL", api.settings.db_url)
    out = tmp_path / "none.jsonl"
    result = CliRunner().invoke(app, ["export", "a" * 32, "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
