"""A tenant's daily USD cap (SWARM_TENANT_MAX_USD_PER_DAY) holds across its concurrent runs: every
model call reserves its worst case on the tenant's day first, so together they never overshoot."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from swarm.api.testing import live_api
from swarm.domain import budget, pricing
from swarm.store.models import RUNS
from tests.conftest import make_settings

CAP_USD = 0.008  # about half of what the five runs would spend
TASK = {"task": "t #sim agents=3 tools=3 tool=echo latency=0.05"}


def run_cost(store, run_ids) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.sum(RUNS.c.cost_pico)).where(RUNS.c.id.in_(run_ids))).scalar() or 0)


def test_concurrent_runs_of_a_tenant_stop_at_its_daily_cap(tmp_path, pg_url, sim):
    # Small worst cases (512 output tokens), so the cap is many calls deep.
    s = make_settings(tmp_path, pg_url, sim.url, tenant_max_usd_per_day=CAP_USD, llm_max_tokens=512)
    with live_api(s) as api, api.client(api.key("tenant-a")) as a, api.client(api.key("tenant-b")) as b:
        with ThreadPoolExecutor(5) as pool:
            ids = list(pool.map(lambda _: a.post("/v1/runs", json=TASK).json()["id"], range(5)))
        other = b.post("/v1/runs", json=TASK).json()["id"]
        done = [api.wait(run_id, timeout=120) for run_id in ids]
        other_done = api.wait(other, timeout=120)

        day = budget.utc_day(time.time())
        spent, reserved = api.store.budgets.tenant_spend("tenant-a", day)
        cap = pricing.to_pico(CAP_USD)
        assert spent <= cap and reserved == 0
        # What the tenant's day holds is exactly what its runs' calls cost.
        assert spent == run_cost(api.store, ids)
        stopped = [d for d in done if d["status"] == "failed"]
        assert stopped and all(d["reason"].startswith("budget: tenant 'tenant-a'") for d in stopped)
        assert any(d["status"] == "succeeded" for d in done) or spent > cap // 2
        # Another tenant has its own day, and this run fits it.
        assert other_done["status"] == "succeeded"
        assert api.store.budgets.tenant_spend("tenant-b", day)[0] == run_cost(api.store, [other])


def test_the_tenant_cap_refuses_at_once_what_could_never_fit(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url, tenant_max_usd_per_day=0.000001)
    with live_api(s) as api, api.client(api.key("tenant-a")) as a:
        run_id = a.post("/v1/runs", json=TASK).json()["id"]
        done = api.wait(run_id, timeout=60)
    assert done["status"] == "failed" and "daily cap" in done["reason"]
    assert done["llm_calls"] == 0  # no model call was started
