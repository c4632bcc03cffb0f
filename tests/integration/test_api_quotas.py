"""Many users on one server: per-key rate limits (shared by every API process through Redis) and
per-tenant quotas, none overshot by a flood of concurrent requests; 429 with Retry-After."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import redis

from swarm.api.testing import live_api
from tests.conftest import make_settings

SLOW = {"task": "t #sim agents=2 tools=40 tool=echo latency=0.5"}  # runs long enough to count as running


def test_a_flood_gets_exactly_the_rate_limit_across_two_api_processes(tmp_path, pg_url, sim, redis_url):
    s = make_settings(tmp_path, pg_url, sim.url, api_rate_per_minute=5, broker_url=redis_url)
    with live_api(s) as one, live_api(s, store=one.store) as two:
        key, other = one.key("tenant-a"), one.key("tenant-b")
        clients = [one.client(key), two.client(key)]
        try:

            def get(i: int) -> tuple[int, str | None]:
                r = clients[i % 2].get("/v1/runs")
                return r.status_code, r.headers.get("Retry-After")

            with ThreadPoolExecutor(10) as pool:
                answers = list(pool.map(get, range(24)))
        finally:
            for c in clients:
                c.close()
        assert sorted(code for code, _ in answers) == [200] * 5 + [429] * 19
        assert all(int(after) >= 1 for code, after in answers if code == 429)
        with one.client(other) as c:  # another key has its own budget
            assert c.get("/v1/runs").status_code == 200
    redis.Redis.from_url(redis_url).flushdb()


def test_a_tenant_flood_starts_exactly_its_quota_of_runs(tmp_path, pg_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, tenant_max_running=3, tenant_max_runs_per_day=5)
    with live_api(s) as api, api.client(api.key("tenant-a")) as a, api.client(api.key("tenant-b")) as b:

        def submit(_: int) -> tuple[int, dict]:
            r = a.post("/v1/runs", json=SLOW)
            return r.status_code, r.json() | {"retry_after": r.headers.get("Retry-After")}

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(submit, range(10)))
        accepted = [body["id"] for code, body in answers if code == 202]
        refused = [body for code, body in answers if code == 429]
        assert len(accepted) == 3 and len(refused) == 7, answers
        assert all("runs running" in r["message"] and int(r["retry_after"]) >= 1 for r in refused)
        assert b.post("/v1/runs", json=SLOW).status_code == 202  # another tenant is not affected

        for run_id in accepted:  # ended runs free the running quota, not the daily one
            assert a.post(f"/v1/runs/{run_id}/cancel").status_code == 200
        more = [a.post("/v1/runs", json=SLOW) for _ in range(3)]
        assert [r.status_code for r in more] == [202, 202, 429]
        assert "last 24 hours" in more[2].json()["message"]
        assert 86000 < int(more[2].headers["Retry-After"]) <= 86400
        for r in more[:2]:
            a.post(f"/v1/runs/{r.json()['id']}/cancel")
