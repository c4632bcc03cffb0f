"""Every call, agent and run priced: the usage the simulator reported, stored per call and summed,
at the price table's prices — exactly; unknown (null) for a model without a price."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.cli.common import app
from swarm.domain import pricing
from swarm.domain.llm import cache_key
from swarm.domain.pricing import Usage
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim import script
from swarm.store.models import AGENTS, RUNS, STEPS
from swarm.store.store import StateStore
from tests.conftest import make_settings

TASK = "priced #sim agents=3 tools=4 tool=echo"


def test_the_sim_reports_prefix_cache_hits_in_both_usage_fields(sim):
    tools = [{"type": "function", "function": {"name": "echo", "description": "x" * 3000, "parameters": {}}}]
    messages = [{"role": "system", "content": "You are the orchestrator."}, {"role": "user", "content": "hi"}]
    with httpx.Client(base_url=sim.url) as client:
        first = client.post("/chat/completions", json={"model": "m", "messages": messages, "tools": tools}).json()
        messages.append({"role": "user", "content": "again " * 400})
        second = client.post("/chat/completions", json={"model": "m", "messages": messages, "tools": tools}).json()
    assert first["usage"]["cached_tokens"] == 0
    prompt_text = script.prompt_text({"messages": messages, "tools": tools})
    assert second["usage"]["prompt_tokens"] == len(prompt_text) // 4
    # The first request's whole 256-token blocks are a prefix of the second one.
    cached = second["usage"]["cached_tokens"]
    assert cached > 0 and cached % script.CACHE_CHUNK_TOKENS == 0
    assert cached == second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert sim.usage()["tokens"]["cached"] == cached


@pytest.mark.timeout(120)
def test_recorded_cost_is_the_price_table_applied_to_the_simulators_usage_exactly(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, TASK))
        summary = rt.wait(run_id, timeout=100)
    assert summary.status == "succeeded", summary.reason
    price = pricing.BUILTIN["kimi-k2.5"]
    reported = {u["step_id"]: u for u in sim.usage(run_id)["calls"]}
    with store.read() as conn:
        steps = conn.execute(select(STEPS).where(STEPS.c.run_id == run_id, STEPS.c.kind == "llm")).all()
        agents = conn.execute(select(AGENTS).where(AGENTS.c.run_id == run_id)).all()
        run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
    assert len(steps) == len(reported) == summary.llm_calls
    for step in steps:
        u = reported[step.id]
        assert (step.tokens_in, step.tokens_cached, step.tokens_out, step.tokens_reasoning) == (
            u["prompt_tokens"],
            u["cached_tokens"],
            u["completion_tokens"],
            u["reasoning_tokens"],
        )
        expected = (
            (u["prompt_tokens"] - u["cached_tokens"]) * price.input
            + u["cached_tokens"] * price.input_cached
            + u["completion_tokens"] * price.output
        )
        assert (
            step.cost_pico
            == expected
            == pricing.cost(Usage(step.tokens_in, step.tokens_cached, step.tokens_out), price)
        )
    for agent in agents:
        mine = [st for st in steps if st.agent_id == agent.id]
        assert agent.cost_pico == sum(st.cost_pico for st in mine)
        assert agent.tokens_cached == sum(st.tokens_cached for st in mine)
    assert run.cost_pico == sum(st.cost_pico for st in steps)
    assert summary.tokens_cached == sum(u["cached_tokens"] for u in reported.values()) > 0
    assert summary.cost_usd == run.cost_pico / pricing.PICO
    tree = {a["id"]: a for a in store.agent_tree(run_id)}
    assert sum(a["tokens_cached"] for a in tree.values()) == summary.tokens_cached
    assert all(a["cost_usd"] == a_row.cost_pico / pricing.PICO for a_row in agents for a in [tree[a_row.id]])


@pytest.mark.timeout(120)
def test_a_model_without_a_price_has_an_unknown_cost_everywhere_until_a_price_file_names_it(
    tmp_path, sqlite_url, sim, monkeypatch
):
    s = make_settings(tmp_path, sqlite_url, sim.url, model="mystery-model")
    with LocalRuntime(s) as rt:
        unpriced = rt.submit(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
        assert rt.wait(unpriced, timeout=60).status == "succeeded"
    prices = tmp_path / "prices.toml"
    prices.write_text('["mystery-model"]\ninput = 1.0\ninput_cached = 0.25\noutput = 4.0\n')
    s = make_settings(tmp_path, sqlite_url, sim.url, model="mystery-model", prices=str(prices))
    with LocalRuntime(s) as rt:
        priced = rt.submit(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
        assert rt.wait(priced, timeout=60).status == "succeeded"

    for name, value in {"SWARM_HOME": tmp_path, "SWARM_DATABASE_URL": sqlite_url, "SWARM_API_URL": ""}.items():
        monkeypatch.setenv(name, str(value))
    cli = CliRunner()
    shown = json.loads(cli.invoke(app, ["show", unpriced, "--json"]).output)
    assert shown["cost_usd"] is None and shown["tokens_in"] > 0
    assert all(a["cost_usd"] is None for a in shown["agents"])
    listed = {r["id"]: r for r in json.loads(cli.invoke(app, ["ls", "--json"]).output)}
    assert listed[unpriced]["cost_usd"] is None
    assert listed[priced]["cost_usd"] > 0 and "tokens_cached" in listed[priced]
    human = cli.invoke(app, ["show", unpriced]).output
    assert "unknown" in human and "$0.0000" not in human


def test_the_rest_api_the_metrics_and_the_export_show_usage_and_cost(tmp_path, sqlite_url, sim):
    from prometheus_client.parser import text_string_to_metric_families

    from swarm.api.testing import live_api

    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as api, api.client(api.key()) as c:
        run_id = c.post("/v1/runs", json={"task": TASK}).json()["id"]
        summary = api.wait(run_id)
        agents = c.get(f"/v1/runs/{run_id}/agents").json()["agents"]
        timeline = c.get(f"/v1/runs/{run_id}/timeline").json()
        metrics = c.get("/metrics").text
        export = [json.loads(line) for line in c.get(f"/v1/runs/{run_id}/export").text.splitlines()]
    assert summary["tokens_cached"] > 0 and summary["cost_usd"] > 0
    assert sum(a["tokens_cached"] for a in agents) == summary["tokens_cached"]
    assert all(a["cost_usd"] > 0 for a in agents)
    llm = [s for s in timeline["steps"] if s["kind"] == "llm"]
    assert len(llm) == summary["llm_calls"] and all(s["cost_usd"] > 0 for s in llm)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert values[("swarm_tokens_total", (("direction", "cached"),))] == summary["tokens_cached"]
    assert values[("swarm_cost_usd_total", ())] == pytest.approx(summary["cost_usd"])
    calls = [s for r in export if r["type"] == "agent" for s in r["steps"] if s["kind"] == "llm"]
    assert sum(s["tokens_cached"] for s in calls) == summary["tokens_cached"]
    assert {"tokens_reasoning", "cost_usd"} <= set(calls[0])
    assert export[0]["cost_usd"] == summary["cost_usd"]


@pytest.mark.timeout(120)
def test_every_request_of_an_agent_extends_its_previous_one_byte_for_byte(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with LocalRuntime(s) as rt:
        run_id = rt.submit(run_spec(s, "cache #sim agents=4 tools=6 tool=echo"))
        summary = rt.wait(run_id, timeout=100)
        names = {a["id"]: a["name"] for a in rt.store.agent_tree(run_id)}
    assert summary.status == "succeeded", summary.reason
    usage = sim.usage(run_id)
    # Not one request broke its agent's prefix (system prompt, tools, earlier messages): every
    # whole cache block of the agent's previous request came back unchanged.
    assert usage["prefix_breaks"] == 0
    calls = usage["calls"]
    assert len(calls) == summary.llm_calls
    # Each call carries the key of its run and agent definition: all workers share one.
    assert all(c["prompt_cache_key"] == cache_key(run_id, names[c["agent_id"]]) for c in calls)
    assert len({c["prompt_cache_key"] for c in calls}) == 2
    # Later requests of each agent are served from the cache, block by block.
    later = [c for i, c in enumerate(calls) if any(d["agent_id"] == c["agent_id"] for d in calls[:i])]
    assert all(c["cached_tokens"] >= script.CACHE_CHUNK_TOKENS for c in later if c["prompt_tokens"] >= 512)
