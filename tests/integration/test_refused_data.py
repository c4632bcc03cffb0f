"""Data the database would refuse never kills a run: NULs, over-long ids and names, absurd token
counts, over-deep or huge tool arguments and binary attachments, on PostgreSQL (whose text and
JSONB refuse NUL) — and a refusal that still happens is one clear step failure, not retries."""

from __future__ import annotations

import base64
import json

from sqlalchemy import insert, select

from swarm.api.testing import live_api
from swarm.domain.sanitize import MAX_ARGUMENT_CHARS, MAX_ID_CHARS, MAX_TOKENS
from swarm.engine.executor import StepExecutor
from swarm.engine.workspace import Workspace
from swarm.llm.client import LLMClient
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import Agent, Message, Step
from swarm.store.store import StateStore, owner_id
from swarm.tools.base import ToolRegistry
from swarm.tools.echo import EchoTool
from tests.conftest import make_settings
from tests.scripted_model import call, scripted_model, tools_then_final


def run_against(tmp_path, db_url, model, task="go", timeout=60):
    s = make_settings(tmp_path, db_url, model.url, llm_max_retries=0)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store, tools=ToolRegistry([EchoTool()])) as rt:
        run_id = rt.submit(run_spec(s, task))
        summary = rt.wait(run_id, timeout=timeout)
    return store, run_id, summary


def messages(store, run_id, role):
    with store.read() as conn:
        return conn.execute(
            select(Message).where(Message.run_id == run_id, Message.role == role).order_by(Message.id)
        ).all()


def tool_results(store, run_id):
    """tool_call_id → the tool message's content."""
    return {m.tool_call_id: m.content for m in messages(store, run_id, "tool")}


def test_nul_bytes_in_model_text_reasoning_and_tool_output_finish_the_run_on_postgres(tmp_path, pg_url):
    first = {
        "content": "looking\x00",
        "reasoning_content": "hmm\x00",
        "tool_calls": [
            call("c1", "echo", json.dumps({"text": "bin\x00ary"})),  # a NUL escaped in JSON
            call("c2", "echo", '{"text": "raw\x00nul"}'),
        ],
    }  # a raw NUL in the JSON text
    final = {"content": "final\x00answer", "reasoning_content": "done\x00"}
    with scripted_model(tools_then_final(first, final)) as model:
        store, run_id, summary = run_against(tmp_path, pg_url, model)
    assert summary.status == "succeeded", summary.reason
    assert summary.result == "final\ufffdanswer"
    assert tool_results(store, run_id) == {"c1": "bin\ufffdary", "c2": "raw\ufffdnul"}
    turn = messages(store, run_id, "assistant")[0]
    assert (turn.content, turn.reasoning_content) == ("looking\ufffd", "hmm\ufffd")
    # The tool got the NUL the model sent (it is the output that was made storable).
    assert json.loads(turn.tool_calls[1]["function"]["arguments"]) == {"text": "raw\x00nul"}


def test_overlong_tool_call_ids_and_names_are_stored_and_keep_calls_paired(tmp_path, pg_url):
    long_a, long_b = "a" * 500, "a" * 499 + "b"  # distinct ids, identical in their first 499 chars
    first = {
        "content": None,
        "tool_calls": [
            call(long_a, "echo", '{"text": "one"}'),
            call(long_b, "echo", '{"text": "two"}'),
            call("short", "x" * 500, "{}"),
        ],
    }
    with scripted_model(tools_then_final(first, {"content": "ok"})) as model:
        store, run_id, summary = run_against(tmp_path, pg_url, model)
        second_request = model.requests[1]["messages"]
    assert summary.status == "succeeded", summary.reason
    ids = [tc["id"] for tc in messages(store, run_id, "assistant")[0].tool_calls]
    assert len(set(ids)) == 3 and all(len(i) <= MAX_ID_CHARS for i in ids) and ids[2] == "short"
    results = tool_results(store, run_id)
    assert (results[ids[0]], results[ids[1]]) == ("one", "two")
    assert "Unknown tool" in results["short"]
    # What the model reads back pairs every call with its result.
    sent_calls = next(m for m in second_request if m["role"] == "assistant")["tool_calls"]
    sent_results = [m["tool_call_id"] for m in second_request if m["role"] == "tool"]
    assert [tc["id"] for tc in sent_calls] == sent_results == ids
    with store.read() as conn:
        names = conn.execute(select(Step.tool_name).where(Step.run_id == run_id, Step.kind == "tool")).scalars()
        assert max(len(n) for n in names) <= 128


def test_absurd_token_counts_are_clamped_not_refused(tmp_path, db_url):
    first = {"content": None, "tool_calls": [call("c1", "echo", '{"text": "x"}')]}
    reply = tools_then_final(
        first,
        {"content": "ok"},
        first_usage={"prompt_tokens": 10**30, "completion_tokens": -5},
        final_usage={"prompt_tokens": "lots", "completion_tokens": 7},
    )
    with scripted_model(reply) as model:
        _, _, summary = run_against(tmp_path, db_url, model)
    assert summary.status == "succeeded", summary.reason
    assert (summary.tokens_in, summary.tokens_out) == (MAX_TOKENS, 7)


def test_over_deep_and_huge_tool_arguments_go_back_as_tool_errors_and_the_run_goes_on(tmp_path, pg_url):
    deep = '{"text": ' + "[" * 10_000 + "]" * 10_000 + "}"
    huge = json.dumps({"text": "a" * (MAX_ARGUMENT_CHARS + 10)})
    first = {
        "content": None,
        "tool_calls": [
            call("deep", "echo", deep),
            call("huge", "echo", huge),
            call("fine", "echo", '{"text": "fine"}'),
        ],
    }
    with scripted_model(tools_then_final(first, {"content": "ok"})) as model:
        store, run_id, summary = run_against(tmp_path, pg_url, model)
        assert len(model.requests) == 2  # the model heard back once, and was not asked again
    assert summary.status == "succeeded", summary.reason
    results = tool_results(store, run_id)
    assert "nested too deeply" in results["deep"]
    assert "too large" in results["huge"]
    assert results["fine"] == "fine"
    assert summary.tool_calls == 1  # refused calls spend no budget


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\x00\x00\xff\xfe endobj\n"


def test_a_binary_attachment_over_the_api_on_postgres_is_stored_and_named_not_inlined(tmp_path, pg_url, sim):
    with live_api(make_settings(tmp_path, pg_url, sim.url)) as api, api.client(api.key()) as c:
        r = c.post(
            "/v1/runs",
            json={
                "task": "read it #sim agents=1 tools=1 tool=echo",
                "attachments": [
                    {"name": "report.pdf", "mime": "application/pdf", "data": base64.b64encode(PDF).decode()},
                    {"name": "notes.txt", "mime": "text/plain", "data": base64.b64encode(b"plain text").decode()},
                ],
            },
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        assert api.wait(run_id)["status"] == "succeeded"
        store = api.store
        parts = messages(store, run_id, "user")[0].content
        assert parts[1]["text"].startswith("Attached file report.pdf (application/pdf, ")
        assert "binary" in parts[1]["text"] and "%PDF" not in parts[1]["text"]
        assert parts[2]["text"] == "Attached file notes.txt:\nplain text"
        with Workspace(run_id, store.artifacts(run_id)) as ws:
            assert (ws.path / "report.pdf").read_bytes() == PDF


def test_a_database_refusal_fails_the_step_once_with_the_reason(tmp_path, pg_url, sim):
    """A value the database refuses (here a message row that collides with the one the turn
    writes) fails the step at once: one paid model call, and the reason says what happened."""
    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    with store.tx() as conn:  # the seq the orchestrator's first reply will take
        seq = conn.execute(select(Agent.next_seq).where(Agent.id == ref.agent_id)).scalar_one()
        conn.execute(
            insert(Message).values(
                run_id=run_id, agent_id=ref.agent_id, seq=seq, role="user", content="in the way", created_at=0.0
            )
        )
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, ToolRegistry([EchoTool()]), s, owner_id())
        assert ex.execute(ref.step_id) == []  # no exception for the dispatcher to log and retry
        assert ex.execute(ref.step_id) == []  # a redelivery finds it done
    summary = store.run_summary(run_id)
    assert summary.status == "failed"
    assert "the database refused this step's data, so it is not retried" in (summary.reason or "")
    assert "duplicate key" in (summary.reason or "")
    assert sim.stats()["by_run"][run_id] == 1
    with store.read() as conn:
        step = conn.execute(select(Step.status, Step.attempt).where(Step.id == ref.step_id)).one()
    assert tuple(step) == ("failed", 1)


def test_a_refused_tool_result_fails_the_step_once_with_the_reason(tmp_path, pg_url, sim):
    """The tool result's message slot is taken: neither the result nor a tool error about it can
    be stored, so the step fails at once, with the reason, instead of re-running the tool."""
    s = make_settings(tmp_path, pg_url, sim.url)
    store = StateStore.from_url(pg_url)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    with LLMClient(s) as llm:
        ex = StepExecutor(store, llm, ToolRegistry([EchoTool()]), s, owner_id())
        (tool_ref,) = ex.execute(ref.step_id)  # the orchestrator's create_subagent call
        with store.tx() as conn:
            seq = conn.execute(select(Step.msg_seq).where(Step.id == tool_ref.step_id)).scalar_one()
            conn.execute(
                insert(Message).values(
                    run_id=run_id,
                    agent_id=tool_ref.agent_id,
                    seq=seq,
                    role="user",
                    content="in the way",
                    created_at=0.0,
                )
            )
        assert ex.execute(tool_ref.step_id) == []
    summary = store.run_summary(run_id)
    assert summary.status == "failed"
    assert "the database refused this step's data, so it is not retried" in (summary.reason or "")
    with store.read() as conn:
        step = conn.execute(select(Step.status, Step.attempt).where(Step.id == tool_ref.step_id)).one()
    assert tuple(step) == ("failed", 1)
