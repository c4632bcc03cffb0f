"""Every view of a run reports the same numbers: `swarm show --json`, `swarm watch` (its view,
folded from the event stream), GET /v1/runs/{id} and /agents, and the trajectory export. Each
count has one definition (docs/architecture.md, "Counts")."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from typer.testing import CliRunner

import swarm.cli.runs  # registers the commands
import swarm.cli.server  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.cli.live import LiveRun
from tests.conftest import make_settings

RUN_FIELDS = ("subagents", "tool_calls", "llm_calls", "critical_steps", "total_steps", "tokens_in", "tokens_out")
AGENT_FIELDS = ("status", "steps", "tool_calls", "tokens_in", "tokens_out")


@pytest.fixture
def api(tmp_path, sqlite_url, sim, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.delenv("SWARM_API_URL", raising=False)
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as a:
        monkeypatch.setenv("SWARM_API_KEY", a.key())
        yield a


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _agents(rows: list[dict[str, Any]], steps_key: str = "steps") -> dict[str, tuple[Any, ...]]:
    return {a["id"]: (a["status"], a[steps_key], *(a[k] for k in AGENT_FIELDS[2:])) for a in rows}


def test_show_watch_api_and_export_report_the_same_counts(api, tmp_path):
    # Refused calls (a subagent budget of 2 for 3 launches, a tool budget the subagents exceed)
    # and orchestration steps are where the views used to disagree.
    with api.client(os.environ["SWARM_API_KEY"]) as c:
        limits = {"max_subagents": 2, "max_tool_calls": 5}
        body = {"task": "agree #sim agents=3 tools=3 tool=echo", "limits": limits}
        run_id = c.post("/v1/runs", json=body).json()["id"]
        cli("watch", run_id, "--json")  # follows the run to its end
        api_run = c.get(f"/v1/runs/{run_id}").json()
        api_agents = c.get(f"/v1/runs/{run_id}/agents").json()["agents"]
    assert api_run["status"] == "succeeded", api_run

    show = json.loads(cli("show", run_id, "--json"))
    events = [json.loads(line) for line in cli("watch", run_id, "--json").splitlines()]
    live = LiveRun(api.store.run_summary(run_id))
    for e in events:
        live.apply(e)
    out = tmp_path / "run.jsonl"
    cli("export", run_id, "--output", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    header = records[0]
    exported = [r for r in records if r["type"] == "agent"]

    expected = {k: show[k] for k in RUN_FIELDS}
    assert expected["subagents"] == 2 and expected["tool_calls"] == 5
    assert {k: api_run[k] for k in RUN_FIELDS} == expected
    assert {k: header[k] for k in RUN_FIELDS} == expected
    watched = {
        "subagents": len(live.subagents),
        "tool_calls": live.tool_calls,
        "llm_calls": sum(a.steps for a in live.agents.values()),
        "critical_steps": live.critical_steps,
        "total_steps": sum(a.steps for a in live.agents.values()),
        "tokens_in": live.tokens_in,
        "tokens_out": live.tokens_out,
    }
    assert watched == expected

    # Per agent: the run's figures are the sums of the agents'.
    tree = _agents(show["agents"])
    assert _agents(api_agents) == tree
    assert _agents(exported, "step_count") == tree
    assert {a.id: (a.status, a.steps, a.tools) for a in live.agents.values()} == {k: v[:3] for k, v in tree.items()}
    assert sum(a["tool_calls"] for a in show["agents"]) == expected["tool_calls"]
    assert sum(a["steps"] for a in show["agents"]) == expected["total_steps"]
    assert sum(a["tokens_in"] for a in show["agents"]) == expected["tokens_in"]
