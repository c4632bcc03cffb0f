"""Human approvals of tool calls, through the REST API on PostgreSQL with the simulated model over
HTTP: a call waits (holding no worker) until it is approved (it runs once), rejected (the model is
told the reason), or expires (rejected); a decision is taken once; cancel and resume keep it
waiting; tenants see only their own."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from swarm.api.testing import live_api
from swarm.sim.params import call_directive
from swarm.store.models import Event, Message, Step
from tests.conftest import make_settings

ECHO_TASK = "say it " + call_directive("echo", {"text": "hello from the tool"})


@pytest.fixture
def api(tmp_path, pg_url, sim):
    settings = make_settings(tmp_path, pg_url, sim.url, sweep_interval=0.2, republish_after=1.0)
    with live_api(settings) as a:
        yield a


def submit(c, task: str = ECHO_TASK, approve: list[str] | None = None) -> str:
    resp = c.post("/v1/runs", json={"task": task, "approve_tools": ["echo"] if approve is None else approve})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def pending(c, run_id: str, timeout: float = 20.0) -> list[dict]:
    """The run's pending approval requests, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = c.get(f"/v1/runs/{run_id}/approvals", params={"pending": "true"}).json()["approvals"]
        if found:
            return found
        assert time.monotonic() < deadline, "no approval was requested"
        time.sleep(0.05)


def step_status(api, step_id: str) -> str:
    with api.store.read() as conn:
        return str(conn.execute(select(Step.status).where(Step.id == step_id)).scalar_one())


def event_types(api, run_id: str) -> list[str]:
    with api.store.read() as conn:
        return list(conn.execute(select(Event.type).where(Event.run_id == run_id).order_by(Event.id)).scalars())


def tool_runs(api, run_id: str) -> int:
    """How many times a tool step of the run was claimed (each claim runs the tool once)."""
    with api.store.read() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(Step.attempt), 0)).where(Step.run_id == run_id, Step.kind == "tool")
            ).scalar_one()
        )


def test_an_approved_call_waits_holding_no_worker_then_runs_once(api):
    key = api.key("t1")
    with api.client(key) as c:
        run_id = submit(c)
        (req,) = pending(c, run_id)
        assert (req["tool"], req["status"], req["agent"]) == ("echo", "pending", "orchestrator")
        assert "hello from the tool" in req["arguments"]
        time.sleep(1.5)  # past republish_after and several sweeps: still waiting, never run
        assert step_status(api, req["step_id"]) == "awaiting_approval"
        assert tool_runs(api, run_id) == 0
        summary = c.get(f"/v1/runs/{run_id}").json()
        assert (summary["status"], summary["approve_tools"]) == ("running", ["echo"])
        assert [a["step_id"] for a in c.get("/v1/approvals").json()["approvals"]] == [req["step_id"]]

        resp = c.post(f"/v1/runs/{run_id}/approvals/{req['step_id']}", json={"decision": "approve", "note": "ok"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "approved" and resp.json()["decided_by"].startswith("key:")
        done = api.wait(run_id)
        assert done["status"] == "succeeded" and "hello from the tool" in done["result"]
        assert tool_runs(api, run_id) == 1

        again = c.post(f"/v1/runs/{run_id}/approvals/{req['step_id']}", json={"decision": "reject", "note": "no"})
        assert again.status_code == 409 and "already approved" in again.json()["message"]
        (decided,) = c.get(f"/v1/runs/{run_id}/approvals").json()["approvals"]
        assert (decided["status"], decided["note"]) == ("approved", "ok")
        assert c.get("/v1/approvals").json()["approvals"] == []
    types = event_types(api, run_id)
    assert types.index("approval_requested") < types.index("approval_decided") < types.index("tool_done")


def test_a_rejected_call_never_runs_and_the_model_gets_the_reason(api):
    with api.client(api.key("t1")) as c:
        run_id = submit(c)
        (req,) = pending(c, run_id)
        url = f"/v1/runs/{run_id}/approvals/{req['step_id']}"
        no_reason = c.post(url, json={"decision": "reject"})
        assert no_reason.status_code == 422 and "body.reject.note" in no_reason.json()["message"]
        assert c.post(url, json={"decision": "reject", "note": "  "}).status_code == 422
        assert step_status(api, req["step_id"]) == "awaiting_approval"  # nothing was stored

        assert c.post(url, json={"decision": "reject", "note": "not on a Friday"}).status_code == 200
        done = api.wait(run_id)
        assert c.post(url, json={"decision": "approve"}).status_code == 409
    assert done["status"] == "succeeded"
    assert "rejected it (not on a Friday)" in done["result"]  # the sim answers with the tool's result
    assert tool_runs(api, run_id) == 0
    with api.store.read() as conn:
        tool_msg = conn.execute(
            select(Message.content).where(Message.run_id == run_id, Message.role == "tool")
        ).scalar_one()
    assert tool_msg.startswith("Error:") and "not on a Friday" in tool_msg


def test_an_expired_request_is_rejected(tmp_path, pg_url, sim):
    settings = make_settings(tmp_path, pg_url, sim.url, sweep_interval=0.2, approval_timeout="1s")
    with live_api(settings) as api, api.client(api.key("t1")) as c:
        run_id = submit(c)
        (req,) = pending(c, run_id)
        assert req["expires_at"] is not None and req["expires_at"] > req["requested_at"]
        done = api.wait(run_id, timeout=30)
        (decided,) = c.get(f"/v1/runs/{run_id}/approvals").json()["approvals"]
        late = c.post(f"/v1/runs/{run_id}/approvals/{req['step_id']}", json={"decision": "approve"})
    assert done["status"] == "succeeded" and "approval expired" in done["result"]
    assert (decided["status"], decided["note"], decided["decided_by"]) == ("rejected", "approval expired", "expiry")
    assert late.status_code == 409
    assert tool_runs(api, run_id) == 0


def test_cancel_and_resume_keep_the_call_waiting_for_its_decision(api):
    with api.client(api.key("t1")) as c:
        run_id = submit(c)
        (req,) = pending(c, run_id)
        url = f"/v1/runs/{run_id}/approvals/{req['step_id']}"
        assert c.post(f"/v1/runs/{run_id}/cancel").json()["changed"] is True
        assert step_status(api, req["step_id"]) == "cancelled"
        refused = c.post(url, json={"decision": "approve"})
        assert refused.status_code == 409 and "resume the run" in refused.json()["message"]
        assert pending(c, run_id)[0]["status"] == "pending"  # the refused decision was not stored

        assert c.post(f"/v1/runs/{run_id}/resume").status_code == 200
        time.sleep(1.5)  # sweeps come and go: a resumed undecided call does not run
        assert step_status(api, req["step_id"]) == "awaiting_approval"
        assert tool_runs(api, run_id) == 0
        assert c.post(url, json={"decision": "approve"}).status_code == 200
        done = api.wait(run_id)
    assert done["status"] == "succeeded" and "hello from the tool" in done["result"]
    assert tool_runs(api, run_id) == 1


def test_tenants_see_and_decide_only_their_own_approvals(api):
    with api.client(api.key("owner")) as mine, api.client(api.key("other")) as theirs:
        run_id = submit(mine)
        (req,) = pending(mine, run_id)
        url = f"/v1/runs/{run_id}/approvals/{req['step_id']}"
        assert theirs.get(f"/v1/runs/{run_id}/approvals").status_code == 404
        assert theirs.get("/v1/approvals").json()["approvals"] == []
        assert theirs.post(url, json={"decision": "approve"}).status_code == 404
        # Their own run's path with my step id: not found either.
        their_run = submit(theirs, approve=[])
        assert (
            theirs.post(f"/v1/runs/{their_run}/approvals/{req['step_id']}", json={"decision": "approve"}).status_code
            == 404
        )
        assert step_status(api, req["step_id"]) == "awaiting_approval"
        assert mine.post(url, json={"decision": "approve"}).status_code == 200
        assert api.wait(run_id)["status"] == "succeeded"


def test_bad_patterns_and_decisions_are_refused_with_what_to_do(api):
    with api.client(api.key("t1")) as c:
        bad = c.post("/v1/runs", json={"task": "x", "approve_tools": ["python; rm -rf /"]})
        assert bad.status_code == 422
        run_id = submit(c)
        (req,) = pending(c, run_id)
        odd = c.post(f"/v1/runs/{run_id}/approvals/{req['step_id']}", json={"decision": "maybe"})
        assert odd.status_code == 422
        assert step_status(api, req["step_id"]) == "awaiting_approval"
        assert c.post(f"/v1/runs/{run_id}/cancel").status_code == 200


def test_concurrent_decisions_store_exactly_one(api):
    """Eight reviewers click at once, half approving, half rejecting: one decision is stored (and
    carried out), every other one is a 409, and the call runs at most once."""
    from concurrent.futures import ThreadPoolExecutor

    key = api.key("t1")
    with api.client(key) as c:
        run_id = submit(c)
        (req,) = pending(c, run_id)
    url = f"/v1/runs/{run_id}/approvals/{req['step_id']}"

    def decide(i: int) -> tuple[int, str]:
        body = {"decision": "approve"} if i % 2 else {"decision": "reject", "note": f"reviewer {i}"}
        with api.client(key) as c:
            resp = c.post(url, json=body)
        return resp.status_code, body["decision"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(decide, range(8)))
    assert sorted(code for code, _ in answers) == [200] + [409] * 7, answers
    winner = next(d for code, d in answers if code == 200)
    done = api.wait(run_id)
    assert done["status"] == "succeeded"
    assert tool_runs(api, run_id) == (1 if winner == "approve" else 0)
    types = event_types(api, run_id)
    assert types.count("approval_decided") == 1
