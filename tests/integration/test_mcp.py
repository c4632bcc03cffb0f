"""MCP servers' tools in real runs: a real MCP server (the SDK's MCPServer, tests/mcp_server.py) over
stdio and over streamable HTTP, the simulated model over HTTP calling its tools by name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive, subcall_directive
from swarm.store.models import Message
from swarm.store.store import StateStore
from swarm.tools.mcp_hub import McpHub
from tests.conftest import make_settings

SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")


def _config(tmp_path: Path, **servers: dict) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return str(path)


def _stdio(*args: str, **extra: object) -> dict:
    return {"command": sys.executable, "args": [SERVER, *args], **extra}


def _tool_messages(store: StateStore, run_id: str) -> list[str]:
    with store.read() as conn:
        rows = conn.execute(
            select(Message.content).where(Message.run_id == run_id, Message.role == "tool").order_by(Message.id)
        )
        return [str(c) for (c,) in rows]


def _run(tmp_path: Path, db_url: str, sim_url: str, task: str, **settings: object) -> tuple[object, list[str]]:
    s = make_settings(tmp_path, db_url, sim_url, **settings)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, task))
        summary = rt.wait(run_id, timeout=120)
    messages = _tool_messages(store, run_id)
    store.engine.dispose()
    return summary, messages


def test_the_orchestrator_calls_a_stdio_mcp_tool_and_the_model_gets_its_result(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, text=_stdio())
    task = f"shout it {call_directive('mcp__text__shout', {'text': 'hello mcp'})}"
    summary, results = _run(tmp_path, sqlite_url, sim.url, task, mcp_config=config)
    assert summary.status == "succeeded", summary.reason
    assert results == ["HELLO MCP"]
    assert "HELLO MCP" in (summary.result or "")  # the simulated model quotes the result it was sent


@pytest.fixture
def http_server(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(tmp_path / "http.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)], stderr=log)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_subagents_call_an_http_mcp_server_offered_to_subagents_only(tmp_path, sqlite_url, sim, http_server):
    config = _config(tmp_path, calc={"url": http_server, "agents": "subagents"})
    task = f"add numbers {subcall_directive('mcp__calc__add', {'a': 20, 'b': 22}, agents=2)}"
    summary, results = _run(tmp_path, sqlite_url, sim.url, task, mcp_config=config)
    assert summary.status == "succeeded", summary.reason
    assert results.count("42") == 2, results


def test_a_hanging_tool_hits_the_servers_deadline_and_the_model_is_told(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, slow=_stdio(timeout=2))
    task = f"wait {call_directive('mcp__slow__hang', {'seconds': 30})}"
    started = time.monotonic()
    summary, results = _run(tmp_path, sqlite_url, sim.url, task, mcp_config=config)
    assert summary.status == "succeeded", summary.reason
    assert len(results) == 1 and "timed out" in results[0] and "within 2 s" in results[0], results
    assert time.monotonic() - started < 25


def test_a_server_that_cannot_start_is_a_tool_error_and_a_check_failure_not_a_crash(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, broken=_stdio("fail", timeout=10))
    task = f"try it {call_directive('mcp__broken__anything', {})}"
    summary, results = _run(tmp_path, sqlite_url, sim.url, task, mcp_config=config)
    assert summary.status == "succeeded", summary.reason
    assert len(results) == 1, results
    assert "MCP server 'broken' could not be started" in results[0]
    assert "refusing to start (as asked)" in results[0]  # its stderr says why
    hub = McpHub(make_settings(tmp_path, sqlite_url, sim.url, mcp_config=config))
    try:
        (report,) = hub.check()
    finally:
        hub.close()
    assert report["server"] == "broken" and not report["ok"] and "could not be started" in report["error"]


def test_a_killed_stdio_server_is_started_again_by_the_next_call(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, t=_stdio(timeout=10))
    hub = McpHub(make_settings(tmp_path, sqlite_url, sim.url, mcp_config=config, mcp_isolation="off"))
    servers = hub.deployment
    try:
        first = hub.call(servers, "mcp__t__whoami", {})
        assert not first.is_error and first.content.isdigit()
        os.kill(int(first.content), 9)
        time.sleep(0.5)
        again = hub.call(servers, "mcp__t__whoami", {})
        assert not again.is_error, again.content
        assert again.content != first.content
        crashed = hub.call(servers, "mcp__t__die", {})  # dies mid-call: an error, never a crashed worker
        assert crashed.is_error
        assert not hub.call(servers, "mcp__t__add", {"a": 1, "b": 1}).is_error
    finally:
        hub.close()
    assert not _alive(int(again.content))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(") ")[-1].split()[0] != "Z"


@pytest.mark.parametrize("isolation", ["bwrap", "off"])
def test_a_stdio_servers_environment_holds_none_of_swarms_secrets(tmp_path, sqlite_url, sim, monkeypatch, isolation):
    for name, value in {
        "SWARM_DATABASE_URL": "postgresql://swarm:pw@db/swarm",
        "SWARM_LLM_API_KEY": "sk-secret",
        "SWARM_BROKER_URL": "redis://:pw@redis:6379/0",
        "GITHUB_TOKEN": "ghp_x",
        "DEPLOY_TOKEN": "given-on-purpose",
    }.items():
        monkeypatch.setenv(name, value)
    config = _config(tmp_path, env=_stdio(env={"WANTED": "yes", "GIVEN": "${DEPLOY_TOKEN}"}))
    s = make_settings(tmp_path, sqlite_url, sim.url, mcp_config=config, mcp_isolation=isolation)
    hub = McpHub(s)
    try:
        result = hub.call(hub.deployment, "mcp__env__environment", {})
    finally:
        hub.close()
    assert not result.is_error, result.content
    env = dict(line.split("=", 1) for line in result.content.splitlines())
    assert env["WANTED"] == "yes" and env["GIVEN"] == "given-on-purpose"  # only what its config names
    assert not {"SWARM_DATABASE_URL", "SWARM_LLM_API_KEY", "SWARM_BROKER_URL", "GITHUB_TOKEN"} & set(env)
    assert not [k for k in env if k.startswith("SWARM_")]
    assert "sk-secret" not in result.content and "pw@" not in result.content


def test_an_isolated_stdio_server_has_no_route_to_the_database(tmp_path, sqlite_url, sim, pg_url):
    code = "import socket; s=socket.create_connection(('127.0.0.1', 5432), 2); print('connected')"
    config = _config(tmp_path, py={"command": sys.executable, "args": ["-c", code]})
    s = make_settings(tmp_path, sqlite_url, sim.url, mcp_config=config, mcp_isolation="bwrap")
    hub = McpHub(s)
    try:
        (report,) = hub.check()
    finally:
        hub.close()
    assert not report["ok"]
    # Its own network namespace: the host's 127.0.0.1:5432 (PostgreSQL, up for this test) is not there.
    error = report["error"]
    assert "ConnectionRefusedError" in error or "Network is unreachable" in error, report


def test_a_runs_own_mcp_config_through_the_rest_api_is_used_and_stored_without_secrets(
    tmp_path, sqlite_url, sim, monkeypatch
):
    from swarm.api.testing import live_api
    from swarm.store.models import Run

    monkeypatch.setenv("RUN_TOKEN", "s3cret-value")
    s = make_settings(tmp_path, sqlite_url, sim.url, mcp_run_vars="RUN_TOKEN")
    own = {"mcpServers": {"mine": _stdio(env={"API_TOKEN": "${RUN_TOKEN}"}, agents="orchestrator")}}
    task = f"count {call_directive('mcp__mine__environment', {})}"
    with live_api(s) as api, api.client(api.key()) as http:
        bad = {"mcpServers": {"mine": _stdio(env={"API_TOKEN": "s3cret-value"})}}
        refused = http.post("/v1/runs", json={"task": task, "mcp": bad})
        assert refused.status_code == 422, refused.text
        assert "API_TOKEN" in refused.text and "looks like a secret" in refused.text
        unknown = http.post("/v1/runs", json={"task": task, "mcp": {"mcpServers": {"x": {"command": "a", "url": "b"}}}})
        assert unknown.status_code == 422 and "McpHttpIn.command" in unknown.text  # names the field

        created = http.post("/v1/runs", json={"task": task, "mcp": own})
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        summary = api.wait(run_id, timeout=120)
        assert summary["status"] == "succeeded", summary
        (result,) = _tool_messages(api.store, run_id)
        assert "API_TOKEN=s3cret-value" in result  # expanded on the worker, for this run's server only
        with api.store.read() as conn:
            stored = conn.execute(select(Run.mcp_config).where(Run.id == run_id)).scalar()
        assert stored is not None and "${RUN_TOKEN}" in stored and "s3cret-value" not in stored


def test_swarm_run_mcp_file_gives_the_run_its_own_servers(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, calc=_stdio())
    task = f"add {call_directive('mcp__calc__add', {'a': 2, 'b': 3})}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env |= {"SWARM_HOME": str(tmp_path / "home"), "SWARM_LLM_BASE_URL": sim.url, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "run", task, "--mcp", config, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert "returned: 5" in json.loads(out.stdout)["result"]
    (tmp_path / "bad.json").write_text('{"mcpServers": {"x": {"command": "a", "bogus": 1}}}')
    bad = subprocess.run(
        [sys.executable, "-m", "swarm", "run", task, "--mcp", str(tmp_path / "bad.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode != 0 and "unknown key(s) bogus" in bad.stderr + bad.stdout


def test_an_image_an_mcp_tool_returns_reaches_the_model_as_an_image_part(tmp_path, sqlite_url, sim):
    config = _config(tmp_path, art=_stdio())
    s = make_settings(tmp_path, sqlite_url, sim.url, mcp_config=config)
    store = StateStore.from_url(sqlite_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, f"draw {call_directive('mcp__art__picture', {})}"))
        summary = rt.wait(run_id, timeout=120)
    store.engine.dispose()
    assert summary.status == "succeeded", summary.reason
    assert "[saw 1 image(s)]" in (summary.result or ""), summary.result
    assert [e["images"] for e in sim.log(run_id)] == [0, 1]  # the call, then the answer with the picture
