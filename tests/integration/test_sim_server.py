"""The simulated model over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swarm.sim import SimConfig, SimParams, SimServer

ORCH_SYSTEM = "You are the orchestrator."


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig()) as server:
        yield server


@pytest.fixture
def client(sim: SimServer) -> Iterator[httpx.Client]:
    sim.reset()
    with httpx.Client(base_url=sim.url, timeout=30) as c:
        yield c


def chat(
    client: httpx.Client, messages: list[dict[str, Any]], run_id: str = "", agent_id: str = "", **body: Any
) -> httpx.Response:
    return client.post(
        "/chat/completions",
        json={"model": "kimi-k2.5", "messages": messages, **body},
        headers={"X-Swarm-Run-Id": run_id, "X-Swarm-Agent-Id": agent_id, "X-Swarm-Step-Id": f"step-{len(messages)}"},
    )


class HttpEngine:
    """The smallest engine loop that runs a swarm against the server."""

    def __init__(self, client: httpx.Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.agents: dict[str, str] = {}
        self.calls = 0

    def converse(self, agent_id: str, system: str, user: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for _ in range(50):
            r = chat(self.client, messages, self.run_id, agent_id, temperature=1.0)
            r.raise_for_status()
            self.calls += 1
            msg = r.json()["choices"][0]["message"]
            messages.append(msg)
            if not msg.get("tool_calls"):
                return str(msg["content"])
            for call in msg["tool_calls"]:
                result = self.tool(call["function"]["name"], json.loads(call["function"]["arguments"]), call["id"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        raise AssertionError("conversation did not finish")

    def tool(self, name: str, args: dict[str, Any], call_id: str) -> str:
        if name == "create_subagent":
            self.agents[args["name"]] = args["system_prompt"]
            return "created"
        if name == "assign_task":
            return self.converse(call_id, self.agents[args["agent"]], args["prompt"])
        assert name == "python"
        return str(re.findall(r"print\((\d+)\)", args["code"])[0])


def test_full_swarm_over_http(sim: SimServer, client: httpx.Client) -> None:
    engine = HttpEngine(client, "run-full")
    final = engine.converse("orchestrator", ORCH_SYSTEM, "Research.\n#sim agents=3 tools=2")
    assert final.startswith("Summary of 3 subagent reports: 3 ok, 0 errors. digest=")
    assert engine.calls == 3 + 3 * 3
    stats = client.get(sim.base_url + "/sim/stats").json()
    assert stats == {
        "requests": 12,
        "served": 12,
        "unique": 12,
        "duplicates": 0,
        "by_run": {"run-full": 12},
        "errors": {},
        "limits": {"max_concurrency": None, "rpm": None, "tpm": None},
        "in_flight": 0,
        "peak_in_flight": 1,
        "throttled": 0,
    }
    assert sim.stats() == stats
    log = client.get(sim.base_url + "/sim/log", params={"run_id": "run-full"}).json()
    assert len(log) == 12
    assert {e["status"] for e in log} == {200}
    assert log[0]["agent_id"] == "orchestrator"
    assert set(log[0]) == {"t", "key", "run_id", "agent_id", "step_id", "status", "images", "key_digest"}
    assert client.get(sim.base_url + "/sim/log", params={"run_id": "other"}).json() == []


def test_same_request_twice_is_a_duplicate(sim: SimServer, client: httpx.Client) -> None:
    messages = [{"role": "system", "content": ORCH_SYSTEM}, {"role": "user", "content": "hi"}]
    first = chat(client, messages, "run-dup")
    second = chat(client, messages, "run-dup")
    assert first.json() == second.json()
    # The same messages in another run is not a repeated call.
    chat(client, messages, "run-other")
    stats = sim.stats()
    assert (stats["served"], stats["unique"], stats["duplicates"]) == (3, 2, 1)
    assert stats["by_run"] == {"run-dup": 2, "run-other": 1}
    assert client.post(sim.base_url + "/sim/reset").json() == {"ok": True}
    assert sim.stats()["requests"] == 0


def test_missing_reasoning_content_is_rejected(sim: SimServer, client: httpx.Client) -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": ORCH_SYSTEM}, {"role": "user", "content": "hi"}]
    msg = chat(client, messages).json()["choices"][0]["message"]
    assert msg["reasoning_content"]
    del msg["reasoning_content"]
    messages += [msg, {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "created"}]
    r = chat(client, messages)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "reasoning_content is missing in assistant tool call message at index 2" in (error["message"])
    # Without thinking the same history is fine (at the non-thinking temperature).
    r = chat(client, messages, thinking={"type": "disabled"}, temperature=0.6)
    assert r.status_code == 200
    assert "reasoning_content" not in r.json()["choices"][0]["message"]
    assert sim.stats()["errors"] == {"400": 1}


def test_malformed_body_is_400(sim: SimServer, client: httpx.Client) -> None:
    r = client.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = chat(client, [{"role": "user", "content": "x"}], temperature=0.2)
    assert r.status_code == 400
    assert sim.stats()["requests"] == 2


def test_http_429x2_then_success(sim: SimServer, client: httpx.Client) -> None:
    messages = [{"role": "system", "content": ORCH_SYSTEM}, {"role": "user", "content": "Go.\n#sim http=429x2"}]
    responses = [chat(client, messages, "run-429") for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["retry-after"] == "0.05"
    assert responses[0].json()["error"]["type"] == "rate_limit_reached_error"
    # The fault counter is per conversation, not per request: later turns are not hit.
    msg = responses[2].json()["choices"][0]["message"]
    later = [*messages, msg, {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "created"}]
    assert chat(client, later, "run-429").status_code == 200
    stats = sim.stats()
    assert stats["errors"] == {"429": 2}
    assert (stats["requests"], stats["served"], stats["duplicates"]) == (4, 2, 0)


def test_http_faults_spare_subagents(sim: SimServer, client: httpx.Client) -> None:
    worker = [
        {"role": "system", "content": "Worker [sim-subagent]"},
        {"role": "user", "content": "Task 1 of 1. #sim http=401"},
    ]
    assert chat(client, worker).status_code == 200


@pytest.mark.parametrize(
    ("spec", "status", "error_type"),
    [
        ("401", 401, "invalid_authentication_error"),
        ("403", 403, "permission_denied_error"),
        ("quota", 429, "exceeded_current_quota_error"),
        ("500x1", 500, "server_error"),
    ],
)
def test_http_fault_kinds(sim: SimServer, client: httpx.Client, spec: str, status: int, error_type: str) -> None:
    messages = [{"role": "user", "content": f"#sim http={spec}"}]
    r = chat(client, messages, f"run-{spec}")
    assert r.status_code == status
    assert r.json()["error"]["type"] == error_type
    assert "retry-after" not in r.headers
    again = chat(client, messages, f"run-{spec}").status_code
    assert again == (200 if spec == "500x1" else status)


def test_concurrent_requests_overlap_their_latency(sim: SimServer) -> None:
    async def one(http: httpx.AsyncClient, i: int) -> int:
        r = await http.post(
            "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": f"request {i}\n#sim latency=0.5"}]},
        )
        return r.status_code

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=sim.url, timeout=30, limits=limits) as http:
            return await asyncio.gather(*(one(http, i) for i in range(100)))

    sim.reset()
    started = time.monotonic()
    statuses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    assert statuses == [200] * 100
    assert elapsed < 10, elapsed
    assert sim.stats()["served"] == 100


def test_models_and_search(sim: SimServer, client: httpx.Client) -> None:
    models = client.get("/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "kimi-k2.5-sim"
    r = client.get(sim.base_url + "/search", params={"q": "agent swarms", "format": "json"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 3
    assert {"url", "title", "content"} <= set(results[0])
    again = client.get(sim.base_url + "/search", params={"q": "agent swarms", "format": "json"})
    assert again.json() == r.json()
    page = client.get(results[0]["url"])
    assert page.status_code == 200
    assert "Sim page" in page.text
    assert client.get(sim.base_url + "/search", params={"format": "json"}).status_code == 400


def test_server_defaults_shape_the_swarm() -> None:
    with (
        SimServer(SimConfig(params=SimParams(agents=2, tools=1, tool="echo", thinking=False))) as sim,
        httpx.Client(base_url=sim.url, timeout=30) as client,
    ):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
        body: dict[str, Any] = {"thinking": {"type": "disabled"}}
        first = chat(client, messages, **body).json()["choices"][0]["message"]
        assert "reasoning_content" not in first
        messages += [first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "created"}]
        fan_out = chat(client, messages, **body).json()["choices"][0]["message"]
        prompts = [json.loads(c["function"]["arguments"])["prompt"] for c in fan_out["tool_calls"]]
        assert prompts == [
            "Task 1 of 2. #sim tools=1 tool=echo tool_latency=0 latency=0 thinking=false",
            "Task 2 of 2. #sim tools=1 tool=echo tool_latency=0 latency=0 thinking=false",
        ]
    assert sim.stats()["served"] == 2
