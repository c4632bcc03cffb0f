"""Loop guards end to end: real runs through the simulated model over HTTP, on PostgreSQL (and the
CLI on SQLite). The repeat guard and the spawn cap reach the model as tool errors; the run goes on."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.domain import prompts
from swarm.store.models import Agent, Message, Run, Step
from tests.conftest import make_settings
from tests.integration.test_engine_runs import run_task

REFUSED = prompts.REPEATED_CALL.format(name="python", limit=3)


def tool_steps(store, agent_id):
    with store.read() as conn:
        return conn.execute(
            select(Step).where(Step.agent_id == agent_id, Step.kind == "tool").order_by(Step.turn, Step.idx)
        ).all()


def tool_messages(store, agent_id):
    with store.read() as conn:
        rows = conn.execute(
            select(Message.content).where(Message.agent_id == agent_id, Message.role == "tool").order_by(Message.seq)
        )
        return [str(r.content) for r in rows]


@pytest.mark.timeout(300)
def test_the_fourth_identical_call_is_refused_and_the_run_goes_on(tmp_path, pg_url, sim):
    # Each subagent makes one identical python call at each of its 5 steps; the call appends to
    # repeat_<i>.txt, so the file counts the runs that really happened.
    store, run_id, s = run_task(tmp_path, pg_url, sim, "t #sim agents=2 tools=5 tool=python scenario=repeat")
    assert s.status == "succeeded", s.reason
    assert s.result.startswith("Summary of 2 subagent reports: 2 ok, 0 errors")
    assert s.tool_calls == 6  # 3 runs per subagent: refused calls spend no budget
    files = store.artifacts(run_id)
    for i in (1, 2):
        assert files[f"repeat_{i}.txt"][1] == b"ran;ran;ran;"  # never a 4th run
    subs = [a for a in store.agent_tree(run_id) if a["parent_id"]]
    assert len(subs) == 2 and all(a["status"] == "succeeded" for a in subs)
    for agent in subs:
        steps = tool_steps(store, agent["id"])
        assert [st.turn for st in steps] == [0, 1, 2, 3, 4]
        assert len({st.arguments for st in steps}) == 1
        ran, refused = steps[:3], steps[3:]
        assert [st.result.strip() for st in ran] == ["runs: 1", "runs: 2", "runs: 3"]
        assert not any(st.is_error for st in ran) and all(st.attempt == 1 for st in ran)
        assert len({st.call_key for st in ran}) == 1 and ran[0].call_key is not None
        # Refused when the turn was committed: never claimed, never run, not counted.
        for st in refused:
            assert (st.status, st.is_error, st.result, st.attempt, st.owner, st.call_key) == (
                "succeeded",
                True,
                REFUSED,
                0,
                None,
                None,
            )
        # What the model read back: its 4th and 5th calls were answered by the guard.
        assert tool_messages(store, agent["id"])[3:] == [REFUSED, REFUSED]
        assert agent["result"].endswith(f"{REFUSED};{REFUSED}")


def test_max_repeats_is_a_setting(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url, max_repeats=1)
    from swarm.runtime import LocalRuntime, run_spec

    with LocalRuntime(s) as rt:
        run_id = rt.submit(run_spec(s, "t #sim agents=1 tools=3 tool=echo scenario=repeat"))
        summary = rt.wait(run_id, timeout=120)
        store = rt.store
        assert summary.status == "succeeded", summary.reason
        assert summary.tool_calls == 1
        [sub] = [a for a in store.agent_tree(run_id) if a["parent_id"]]
        once = prompts.REPEATED_CALL.format(name="echo", limit=1)
        assert tool_messages(store, sub["id"]) == ["task 1, the same call again", once, once]


@pytest.mark.timeout(300)
def test_spawn_cap_refuses_the_rest_of_a_turn_and_the_orchestrator_assigns_them_later(tmp_path, pg_url, sim):
    with live_api(make_settings(tmp_path, pg_url, sim.url)) as api, api.client(api.key("t")) as c:
        r = c.post(
            "/v1/runs",
            json={"task": "cap #sim agents=5 tools=1 tool=echo", "limits": {"max_spawns_per_turn": 3}},
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        summary = api.wait(run_id)
        store = api.store
        assert summary["status"] == "succeeded", summary["reason"]
        with store.read() as conn:
            assert conn.execute(select(Run.max_spawns_per_turn).where(Run.id == run_id)).scalar_one() == 3
            orch = conn.execute(select(Agent.id).where(Agent.run_id == run_id, Agent.parent_id.is_(None))).scalar_one()
            launched = Counter(
                conn.execute(select(Agent.parent_turn).where(Agent.run_id == run_id, Agent.parent_id.is_not(None)))
                .scalars()
                .all()
            )
        # Turn 1 asked for 5: 3 launched, 2 told to wait; turn 2 assigned those 2.
        assert launched == {1: 3, 2: 2}
        assert summary["subagents"] == 5
        fan_out = [st for st in tool_steps(store, orch) if st.turn == 1]
        assert [st.tool_name for st in fan_out] == ["assign_task"] * 5
        cap_error = prompts.SPAWN_CAP.format(cap=3)
        assert [st.result == cap_error for st in fan_out] == [False, False, False, True, True]
        assert [st.child_agent_id is not None for st in fan_out] == [True, True, True, False, False]
        assert sum(m == cap_error for m in tool_messages(store, orch)) == 2
        assert [json.loads(st.arguments)["prompt"].split(".")[0] for st in tool_steps(store, orch) if st.turn == 2] == [
            "Task 4 of 5",
            "Task 5 of 5",
        ]
        assert summary["result"].startswith("Summary of 5 subagent reports: 5 ok, 0 errors")
        assert summary["critical_steps"] == 1 + (1 + 2) + (1 + 2) + 1

        # Bad input is refused before anything runs.
        bad = c.post("/v1/runs", json={"task": "x", "limits": {"max_spawns_per_turn": 0}})
        assert bad.status_code == 422
        assert bad.json()["fields"][0]["field"] == "body.limits.max_spawns_per_turn"


def test_cli_flag(tmp_path, sim, monkeypatch):
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    monkeypatch.setenv("SWARM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SWARM_LLM_BASE_URL", sim.url)
    monkeypatch.setenv("SWARM_BROKER_URL", "")
    monkeypatch.setenv("SWARM_API_URL", "")
    runner = CliRunner()
    for bad in ("0", "-2"):
        result = runner.invoke(app, ["run", "x #sim agents=1 tools=0", "--max-spawns-per-turn", bad])
        assert result.exit_code == 2, result.output  # a usage error (64 from `python -m swarm`)
        flat = " ".join(result.output.replace("│", " ").split())  # rich wraps the message in a box
        assert "max_spawns_per_turn (--max-spawns-per-turn) must be a whole number at least 1" in flat
    result = runner.invoke(app, ["run", "t #sim agents=3 tools=1 tool=echo", "--max-spawns-per-turn", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "succeeded" and out["subagents"] == 3
    assert out["result"].startswith("Summary of 3 subagent reports: 3 ok, 0 errors")
