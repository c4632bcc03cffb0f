"""MCP tools on a real cluster: two worker nodes (celery processes: a threads-pool LLM worker and a
prefork tool worker each) read SWARM_MCP_CONFIG, list a stdio MCP server's tools for the model turns
and run its calls in their own processes' servers; the results reach the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from swarm.dispatch.celery import CeleryDispatcher
from swarm.runtime import run_spec
from swarm.sim.params import subcall_directive
from swarm.store.models import Message
from swarm.store.store import StateStore
from tests.acceptance.cluster import cluster, wait_done
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")


@pytest.mark.timeout(300)
def test_subagents_on_two_nodes_call_a_stdio_mcp_server(tmp_path, pg_url, redis_url, sim):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"text": {"command": sys.executable, "args": [SERVER]}}}))
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    store = StateStore.from_url(pg_url)
    dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
    with cluster(tmp_path / "cluster", s, SWARM_MCP_CONFIG=str(config)) as c:
        c.start_node("a", tool_concurrency=1)
        c.start_node("b", tool_concurrency=1)
        task = f"shout {subcall_directive('mcp__text__shout', {'text': 'from the cluster'}, agents=4)}"
        run_id, refs = store.create_run(run_spec(s, task, max_subagents=4, max_tool_calls=8))
        dispatcher.dispatch(refs)
        summary = wait_done(store, run_id, 180, c)
        assert summary.status == "succeeded", f"{summary}\n{c.logs()}"
    with store.read() as conn:
        results = [
            str(m)
            for (m,) in conn.execute(select(Message.content).where(Message.run_id == run_id, Message.role == "tool"))
        ]
    # 1 create_subagent + 4 assign_task results (the subagents' answers) + 4 MCP results.
    assert results.count("FROM THE CLUSTER") == 4, results
    assert sum("FROM THE CLUSTER" in r for r in results) >= 8
    store.engine.dispose()


def test_worker_check_reports_each_mcp_server_started_or_why_not(tmp_path, pg_url, redis_url, sim):
    config = tmp_path / "mcp.json"
    servers = {"text": {"command": sys.executable, "args": [SERVER]}, "broken": {"command": "no-such-mcp-server"}}
    config.write_text(json.dumps({"mcpServers": servers}))
    s = make_settings(tmp_path, pg_url, sim.url, broker_url=redis_url)
    with cluster(tmp_path / "cluster", s, SWARM_MCP_CONFIG=str(config)) as c:
        out = subprocess.run(
            [sys.executable, "-m", "swarm", "worker", "--check", "--json"],
            env=c.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    assert out.returncode == 0, out.stderr  # a broken MCP server is reported, the node still starts
    report = json.loads(out.stdout)
    by_name = {r["server"]: r for r in report["mcp"]}
    assert by_name["text"] == {"server": "text", "ok": True, "tools": 8}
    assert not by_name["broken"]["ok"] and "could not be started" in by_name["broken"]["error"]
    assert report["mcp_ok"] is False

    config.write_text(json.dumps({"mcpServers": {"x": {"command": "a", "url": "http://h/mcp"}}}))
    with cluster(tmp_path / "cluster2", s, SWARM_MCP_CONFIG=str(config)) as c:
        bad = subprocess.run(
            [sys.executable, "-m", "swarm", "worker", "--check"],
            env=c.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    assert bad.returncode != 0
    assert "server 'x': give either 'command'" in bad.stderr + bad.stdout
