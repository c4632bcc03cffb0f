"""API keys that expire and record their last use; submissions made safe to retry with
Idempotency-Key (one run however often, or however concurrently, a key is sent)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select
from typer.testing import CliRunner

import swarm.cli.server  # noqa: F401  (registers the commands)
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.store.models import RUNS
from tests.conftest import make_settings

TASK = {"task": "t #sim agents=1 tools=1 tool=echo"}


def run_count(store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(RUNS)).scalar() or 0)


def test_an_expired_key_is_refused_and_keys_record_their_last_use(tmp_path, sqlite_url, sim):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as api:
        info, key = api.store.create_key("tenant-a", expires_in=1.0)
        assert info.last_used_at is None
        with api.client(key) as c:
            assert c.get("/v1/runs").status_code == 200
            used = api.store.list_keys()[0].last_used_at
            assert used is not None and used >= info.created_at
            assert c.get("/v1/runs").status_code == 200
            assert api.store.list_keys()[0].last_used_at == used  # kept to the minute: no write per request
            time.sleep(1.1)
            refused = c.get("/v1/runs")
        assert refused.status_code == 403 and "expired" in refused.json()["message"]


def test_a_repeated_idempotency_key_returns_the_first_run(tmp_path, pg_url, sim):
    with (
        live_api(make_settings(tmp_path, pg_url, sim.url)) as api,
        api.client(api.key("tenant-a")) as a,
        api.client(api.key("tenant-b")) as b,
    ):
        first = a.post("/v1/runs", json=TASK, headers={"Idempotency-Key": "order-17"})
        again = a.post("/v1/runs", json=TASK, headers={"Idempotency-Key": "order-17"})
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        other_tenant = b.post("/v1/runs", json=TASK, headers={"Idempotency-Key": "order-17"})
        assert other_tenant.json()["id"] != first.json()["id"]  # keys are per tenant
        assert run_count(api.store) == 2

        # Eight retries at once: the unique index decides, every caller gets the same run.
        def submit(_: int) -> str:
            r = a.post("/v1/runs", json=TASK, headers={"Idempotency-Key": "burst"})
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(submit, range(8)))
        assert len(ids) == 1 and run_count(api.store) == 3
        api.wait(ids.pop())

        bad = a.post("/v1/runs", json=TASK, headers={"Idempotency-Key": "x" * 256})
        assert bad.status_code == 422


def test_keys_create_takes_a_lifetime(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--tenant", "t1", "--expires-in", "90d", "--json"])
    assert made.exit_code == 0, made.output
    info = json.loads(made.output)
    assert abs(info["expires_at"] - info["created_at"] - 90 * 86400) < 1
    refused = runner.invoke(app, ["keys", "create", "--expires-in", "0d", "--json"])
    assert refused.exit_code == 3 and "not an age" in json.loads(refused.output)["message"]
