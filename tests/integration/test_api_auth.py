"""Auth and tenancy: every /v1 route needs a valid key, and a key sees only its tenant's runs."""

from __future__ import annotations

import pytest

from swarm.api.testing import live_api
from tests.conftest import make_settings

OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture
def api(tmp_path, sqlite_url, sim):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as a:
        yield a


@pytest.fixture
def finished_run(api):
    """A succeeded run of tenant-a and tenant-a's key."""
    key = api.key("tenant-a")
    with api.client(key) as c:
        # With a file, so the files routes have one to serve its owner.
        note = {"name": "notes.txt", "mime": "text/plain", "data": "bm90ZXM="}
        body = {"task": "auth #sim agents=2 tools=1 tool=echo", "attachments": [note]}
        run_id = c.post("/v1/runs", json=body).json()["id"]
    assert api.wait(run_id)["status"] == "succeeded"
    return run_id, key


def protected_operations(api):
    with api.client(None) as c:
        spec = c.get("/openapi.json").json()
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if path in OPEN_PATHS:
                assert not op.get("security"), f"{method} {path} should not need a key"
                continue
            assert op.get("security") == [{"ApiKey": []}], f"{method.upper()} {path} is not marked as protected"
            ops.append((method.upper(), path))
    assert len(ops) >= 9
    return ops


#: A step id for routes that take one (no such step exists: a decision on it is a 404 even for its run's owner).
STEP_ID = "0" * 32


def call(client, method, path, run_id):
    url = path.replace("{run_id}", run_id).replace("{step_id}", STEP_ID).replace("{path}", "notes.txt")
    body = {"task": "x #sim agents=1 tools=0 tool=echo"} if (method, path) == ("POST", "/v1/runs") else None
    if "{step_id}" in path:
        body = {"decision": "approve"}
    if path.endswith("/fork"):
        body = {"at_step": STEP_ID}
    return client.request(method, url, json=body, params={"follow": "false"} if url.endswith("/events") else None)


def assert_error(resp, status, code):
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    body = resp.json()
    assert body["error"] == code and body["message"]
    assert "Traceback" not in resp.text


def test_every_protected_route_refuses_missing_wrong_and_revoked_keys(api, finished_run):
    run_id, _ = finished_run
    revoked = api.key("tenant-a")
    api.store.revoke_key(revoked.split("_")[1])
    ops = protected_operations(api)
    for method, path in ops:
        for key, status, code in (
            (None, 401, "unauthorized"),
            ("swk_00000000_wrong", 401, "unauthorized"),
            ("not-even-a-swarm-key", 401, "unauthorized"),
            (revoked, 403, "forbidden"),
        ):
            with api.client(key) as c:
                resp = call(c, method, path, run_id)
            assert_error(resp, status, code)
            if status == 401:
                assert resp.headers["www-authenticate"].startswith("Bearer")
    # Basic auth or a bare token is not a bearer key.
    with api.client(None) as c:
        assert_error(c.get("/v1/runs", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "unauthorized")
    # No request above created a run.
    assert len(api.store.list_runs()) == 1


def test_open_routes_need_no_key(api):
    with api.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["database"]["ok"]
        assert "swarm_active_runs" in c.get("/metrics").text
        assert c.get("/dashboard/").status_code == 200  # the static shell; data needs a key


def test_tenants_cannot_see_each_others_runs(api, finished_run):
    run_id, key_a = finished_run
    key_b = api.key("tenant-b")
    for method, path in protected_operations(api):
        if path in ("/v1/runs", "/v1/info", "/v1/approvals", "/v1/provider"):  # the caller's own, or no tenant's
            continue
        with api.client(key_b) as c:
            assert_error(call(c, method, path, run_id), 404, "not_found")
        if method == "DELETE":  # its owner's delete works too (test_retention.py), but ends this test's run
            continue
        if "{step_id}" in path or path.endswith("/fork"):  # no such step in the owner's run either
            continue  # (test_approvals.py decides real ones, test_fork.py forks at real steps)
        with api.client(key_a) as c:
            assert call(c, method, path, run_id).status_code in (200, 409)  # 409: resume of a succeeded run
    with api.client(key_b) as c:
        assert c.get("/v1/runs").json()["runs"] == []
        other = c.post("/v1/runs", json={"task": "b #sim agents=1 tools=0 tool=echo"}).json()["id"]
    with api.client(key_a) as c:
        assert [r["id"] for r in c.get("/v1/runs").json()["runs"]] == [run_id]
    assert api.store.run_summary(other).tenant == "tenant-b"
    # An admin key sees every tenant's runs.
    with api.client(api.key("ops", admin=True)) as c:
        assert {r["id"] for r in c.get("/v1/runs").json()["runs"]} == {run_id, other}
        assert c.get(f"/v1/runs/{run_id}").status_code == 200
        info = c.get("/v1/info").json()
        assert info["admin"] and info["tenant"] == "ops" and info["mode"] == "embedded"
    api.wait(other)


def test_errors_are_json_with_the_bad_field(api, finished_run):
    run_id, key = finished_run
    with api.client(key) as c:
        r = c.post("/v1/runs", json={"task": "ok", "limits": {"max_subagents": -1}})
        assert_error(r, 422, "invalid_request")
        assert r.json()["fields"][0]["field"] == "body.limits.max_subagents"
        r = c.post("/v1/runs", json={"task": "nul \x00 byte"})
        assert_error(r, 422, "invalid_request")
        assert r.json()["fields"][0]["field"] == "body.task"
        r = c.post("/v1/runs", json={"task": "x", "attachments": [{"name": "../etc/passwd", "data": "aGk="}]})
        assert r.json()["fields"][0]["field"] == "body.attachments.0.name"
        r = c.post("/v1/runs", json={"task": "x", "attachments": [{"name": "a.txt", "data": "not base64!"}]})
        assert r.json()["fields"][0]["field"] == "body.attachments.0.data"
        r = c.post("/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
        assert_error(r, 422, "invalid_request")
        assert_error(c.get("/v1/runs", params={"limit": 0}), 422, "invalid_request")
        assert_error(c.get("/v1/runs", params={"status": "bogus"}), 422, "invalid_request")
        assert_error(c.get("/v1/runs/not-a-run-id"), 422, "invalid_request")
        assert_error(c.get(f"/v1/runs/{'0' * 32}"), 404, "not_found")
        r = c.post(f"/v1/runs/{run_id}/resume")
        assert_error(r, 409, "conflict")
        assert "already succeeded" in r.json()["message"]
        assert_error(c.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "abc"}), 422, "invalid_request")
        assert_error(c.delete("/v1/runs"), 405, "method_not_allowed")
