"""Several providers (SWARM_PROVIDERS) over two real simulated models: a run that names provider B
sends every model call to sim B with B's key, a run that names none goes to A; a run's own cap
holds at B; an unknown name is refused (422, CLI exit 3); a worker that does not know the name
fails the run saying what to configure; no key reaches the database or the logs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.api.testing import LiveApi, live_api
from swarm.cli.common import ExitCode, app
from swarm.runtime import LocalRuntime, run_spec, wait_for_run
from swarm.sim import SimConfig, SimServer
from swarm.store.store import StateStore
from tests.conftest import make_settings

KEY_A, KEY_B = "sk-account-a-0123456789secret", "sk-account-b-9876543210secret"
TASK = "providers #sim agents=6 tools=1 tool=echo latency=0.3"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture
def sim_b() -> Iterator[SimServer]:
    with SimServer(SimConfig(port=0)) as server:
        yield server


@pytest.fixture
def providers(sim_b: SimServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEAM_B_KEY", KEY_B)
    spec = {"b": {"base_url": sim_b.url, "api_key": "${TEAM_B_KEY}", "model": "kimi-b", "concurrency": 10}}
    return json.dumps({"providers": spec})


@pytest.fixture
def api(tmp_path, sqlite_url, sim, providers) -> Iterator[LiveApi]:
    s = make_settings(tmp_path, sqlite_url, sim.url, llm_api_key=KEY_A, providers=providers, provider_concurrency=8)
    with live_api(s) as a:
        yield a


def text_values(store: StateStore) -> str:
    """Every value of every table, as text: what a key must never be found in."""
    out = []
    with store.engine.connect() as conn:
        for table in inspect(store.engine).get_table_names():
            out.extend(str(row) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    return "\n".join(out)


def test_a_run_goes_to_its_named_provider_with_its_key_and_its_own_cap(api, sim, sim_b, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    http = api.client(api.key())
    body = {"task": TASK, "provider": "b", "provider_concurrency": 2}
    at_b = http.post("/v1/runs", json=body).json()["id"]
    assert api.wait(at_b)["status"] == "succeeded"
    calls = sim_b.log(at_b)
    assert len(calls) >= 7 and {c["key_digest"] for c in calls} == {digest(KEY_B)}
    assert sim.log(at_b) == []
    assert sim_b.stats()["peak_in_flight"] <= 2  # the run's cap, below the account's 10
    assert api.store.run_summary(at_b).model == "kimi-b"  # the provider's model, as none was given

    sim_b.reset()
    uncapped = http.post("/v1/runs", json={"task": TASK, "provider": "b"}).json()["id"]
    assert api.wait(uncapped)["status"] == "succeeded"
    assert sim_b.stats()["peak_in_flight"] > 2  # without its own cap the same run goes wider

    at_a = http.post("/v1/runs", json={"task": TASK}).json()["id"]
    assert api.wait(at_a)["status"] == "succeeded"
    assert sim_b.log(at_a) == [] and {c["key_digest"] for c in sim.log(at_a)} == {digest(KEY_A)}

    with api.store.engine.connect() as conn:
        row = conn.execute(text("SELECT provider, provider_concurrency FROM runs WHERE id = :i"), {"i": at_b}).one()
    assert tuple(row) == ("b", 2)
    with api.store.engine.connect() as conn:
        step = conn.execute(text("SELECT id FROM steps WHERE run_id = :i AND kind = 'llm' LIMIT 1"), {"i": at_b})
        fork_id, _ = api.store.fork_run(at_b, step.scalar_one())
        forked = conn.execute(text("SELECT provider, provider_concurrency FROM runs WHERE id = :i"), {"i": fork_id})
        assert tuple(forked.one()) == ("b", 2)  # a fork is the same work on the same account
    stored = text_values(api.store)
    assert KEY_A not in stored and KEY_B not in stored
    assert KEY_A not in caplog.text and KEY_B not in caplog.text

    views = http.get("/v1/provider").json()
    assert len(views) == 2 and {v["max_concurrency"] for v in views} == {8, 10}
    metrics = http.get("/metrics").text
    assert metrics.count("swarm_provider_max_concurrency{") == 2


def test_an_unknown_provider_or_a_higher_limit_is_refused_with_422(api) -> None:
    http = api.client(api.key())
    r = http.post("/v1/runs", json={"task": TASK, "provider": "nope"})
    assert r.status_code == 422 and "unknown provider 'nope'; known providers: b" in r.text
    r = http.post("/v1/runs", json={"task": TASK, "provider": "b", "provider_concurrency": 11})
    assert r.status_code == 422 and "a run can only lower" in r.text
    r = http.post("/v1/runs", json={"task": TASK, "provider_rpm": 0})
    assert r.status_code == 422


def test_the_cli_runs_on_a_named_provider_and_refuses_an_unknown_one(
    tmp_path, sqlite_url, sim, sim_b, providers, monkeypatch
) -> None:
    for name, value in {
        "SWARM_HOME": str(tmp_path),
        "SWARM_DATABASE_URL": sqlite_url,
        "SWARM_LLM_BASE_URL": sim.url,
        "SWARM_PROVIDERS": providers,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["run", TASK, "--provider", "nope"])
    assert result.exit_code == ExitCode.INVALID and "known providers: b" in result.output
    result = CliRunner().invoke(app, ["run", TASK, "--provider", "b", "--provider-concurrency", "2", "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.output)["id"]
    assert len(sim_b.log(run_id)) >= 7 and sim.log(run_id) == []
    assert sim_b.stats()["peak_in_flight"] <= 2


def test_a_worker_that_does_not_know_the_provider_fails_the_run_saying_what_to_configure(
    tmp_path, sqlite_url, sim, providers
) -> None:
    submitter = make_settings(tmp_path, sqlite_url, sim.url, providers=providers)
    worker = make_settings(tmp_path, sqlite_url, sim.url)  # no SWARM_PROVIDERS here
    spec = run_spec(submitter, "t #sim agents=1 tools=1 tool=echo", provider="b")
    runtime = LocalRuntime(worker)
    try:
        run_id = runtime.submit(dataclasses.replace(spec))
        summary = wait_for_run(runtime.store, run_id, timeout=30)
    finally:
        runtime.close()
    assert summary.status == "failed"
    assert "no provider named 'b'" in (summary.reason or "") and "SWARM_PROVIDERS" in (summary.reason or "")


@pytest.mark.redis
def test_worker_check_lists_the_providers_it_knows_without_their_keys(
    tmp_path, pg_url, redis_url, sim, providers
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "SWARM_HOME": str(tmp_path),
        "SWARM_DATABASE_URL": pg_url,
        "SWARM_BROKER_URL": redis_url,
        "SWARM_LLM_BASE_URL": sim.url,
        "SWARM_LLM_API_KEY": KEY_A,
        "SWARM_PROVIDERS": providers,
        "TEAM_B_KEY": KEY_B,
    }
    out = subprocess.run(
        [sys.executable, "-m", "swarm", "worker", "--queues", "llm", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert "provider default: 127.0.0.1" in out.stdout and "(no limits)" in out.stdout
    assert f"provider b: 127.0.0.1:{sim_port(providers)}/kimi-b#{digest(KEY_B)[:6]} (concurrency 10)" in out.stdout
    assert KEY_A not in out.stdout + out.stderr and KEY_B not in out.stdout + out.stderr


def sim_port(providers: str) -> str:
    return json.loads(providers)["providers"]["b"]["base_url"].split(":")[2].split("/")[0]
