"""Operations endpoints: health, readiness, Prometheus metrics; and the dashboard shell's headers."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarm.api.testing import live_api
from swarm.exceptions import StoreUnavailable
from tests.conftest import make_settings


@pytest.fixture
def api(tmp_path, sqlite_url, sim):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as a:
        yield a


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_match_the_database(api):
    key = api.key()
    with api.client(key) as c:
        run_id = c.post("/v1/runs", json={"task": "metrics #sim agents=3 tools=2 tool=echo"}).json()["id"]
        run = api.wait(run_id)
        c.get("/v1/runs")
    with api.client(None) as c:
        resp = c.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    m = samples(resp.text)
    assert m[("swarm_runs", (("status", "succeeded"),))] == 1
    assert m[("swarm_active_runs", ())] == 0 and m[("swarm_active_agents", ())] == 0
    assert m[("swarm_steps", (("kind", "llm"), ("status", "succeeded")))] == run["llm_calls"]
    # Tool steps: the real tool calls plus the orchestrator's create_subagent and assign_task calls.
    assert m[("swarm_steps", (("kind", "tool"), ("status", "succeeded")))] == run["tool_calls"] + 1 + 3
    assert m[("swarm_step_duration_seconds_count", (("kind", "llm"),))] == run["llm_calls"]
    assert m[("swarm_step_duration_seconds_bucket", (("kind", "llm"), ("le", "+Inf")))] == run["llm_calls"]
    assert m[("swarm_step_queue_wait_seconds_count", (("kind", "tool"),))] == run["tool_calls"] + 4
    assert m[("swarm_tokens_total", (("direction", "in"),))] == run["tokens_in"]
    assert m[("swarm_tokens_total", (("direction", "out"),))] == run["tokens_out"]
    assert (
        m[("swarm_api_request_duration_seconds_count", (("method", "GET"), ("route", "/v1/runs"), ("status", "200")))]
        >= 1
    )
    assert key not in resp.text


@contextmanager
def database_down(api):
    def unavailable(*_a, **_k):
        raise StoreUnavailable("database unavailable: simulated outage")

    original = api.store.read
    api.store.read = unavailable  # the server runs in this process: same store object
    try:
        yield
    finally:
        api.store.read = original


def test_readiness_and_errors_while_the_database_is_down(api):
    key = api.key()
    with api.client(key) as c, database_down(api):
        assert c.get("/healthz").json() == {"status": "ok"}  # liveness touches nothing
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable" and ready.json()["checks"]["database"]["ok"] is False
        resp = c.get("/v1/runs")
        assert resp.status_code == 503 and resp.json()["error"] == "unavailable"
        assert resp.headers["retry-after"] == "2" and "Traceback" not in resp.text
    with api.client(key) as c:
        assert c.get("/readyz").status_code == 200


def test_dashboard_shell_is_public_and_locked_down(api):
    with api.client(None) as c:
        page = c.get("/dashboard/runs/" + "e" * 32)
        assert page.status_code == 200 and "<title>swarm dashboard</title>" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert c.get("/dashboard/static/app.js").status_code == 200
        assert c.get("/", follow_redirects=False).headers["location"] == "/dashboard/"
        assert "/dashboard/" not in c.get("/openapi.json").json()["paths"]
