"""Poison steps end: a step that crashes its worker SWARM_STEP_MAX_CRASHES times is given up
with a clear reason (a tool call as a tool error to the model, an LLM step failing its agent),
and a step with no attempt left is failed, never left `ready` until the run's wall limit."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

from sqlalchemy import select, update

from swarm.engine.executor import StepExecutor
from swarm.llm.client import LLMClient
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import Message, Step
from swarm.store.store import StateStore, owner_id
from swarm.tools.base import ToolRegistry
from swarm.tools.echo import EchoTool
from tests.conftest import make_settings
from tests.scripted_model import call, scripted_model, tools_then_final

#: A worker process with a tool that kills it: what code that takes the embedded server down does.
WORKER = textwrap.dedent("""
    import os, signal, sys
    from swarm.config import Settings
    from swarm.runtime import LocalRuntime, run_spec
    from swarm.tools.base import ToolRegistry, ToolResult
    from swarm.tools.echo import EchoTool

    class Crash:
        name, description, uses_workspace = "crash", "Kills the process running it.", False
        parameters = {"type": "object", "properties": {}}

        def run(self, args, ctx):
            os.kill(os.getpid(), signal.SIGKILL)
            return ToolResult("unreachable")

    db_url, llm_url, home, run_id = sys.argv[1:5]
    s = Settings(_env_file=None, home=home, database_url=db_url, llm_base_url=llm_url, broker_url="",
                 llm_max_retries=0)
    with LocalRuntime(s, tools=ToolRegistry([EchoTool(), Crash()])) as rt:
        if run_id == "new":
            run_id = rt.submit(run_spec(s, "crash me"))
            print(run_id, flush=True)
        else:
            rt.resume(run_id)  # what the server does on start for the runs it adopts
        rt.wait(run_id, timeout=60)
    print("survived", flush=True)
""")


def start_worker(tmp_path, db_url, llm_url, run_id="new"):
    return subprocess.run(
        [sys.executable, "-c", WORKER, db_url, llm_url, str(tmp_path), run_id],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_tool_call_that_kills_its_server_on_every_start_becomes_a_tool_error(tmp_path, pg_url):
    first = {"content": None, "tool_calls": [call("boom", "crash", "{}")]}
    with scripted_model(tools_then_final(first, {"content": "went on without it"})) as model:
        born = start_worker(tmp_path, pg_url, model.url)
        assert born.returncode == -9, born.stderr
        run_id = born.stdout.split()[0]
        for _ in range(2):  # two more starts adopt the step, and it kills them too
            again = start_worker(tmp_path, pg_url, model.url, run_id)
            assert again.returncode == -9, again.stderr
        s = make_settings(tmp_path, pg_url, model.url, llm_max_retries=0)
        assert s.step_max_crashes == 3
        store = StateStore.from_url(pg_url)
        with LocalRuntime(s, store=store, tools=ToolRegistry([EchoTool()])) as rt:
            rt.resume(run_id)  # the fourth start: the step crashed 3 times, it is not run again
            summary = rt.wait(run_id, timeout=60)
        assert summary.status == "succeeded", summary.reason
        assert summary.result == "went on without it"
        told = next(m for m in model.requests[-1]["messages"] if m["role"] == "tool")
    assert told["tool_call_id"] == "boom"
    assert "crashed the worker running it 3 times" in told["content"] and "not retried" in told["content"]
    with store.read() as conn:
        step = conn.execute(
            select(Step.attempt, Step.error, Step.is_error).where(Step.run_id == run_id, Step.tool_name == "crash")
        ).one()
    assert tuple(step) == (3, "step crashed its worker 3 times; not retried", True)


def crash(store, step_id, owner="dead-worker"):
    """A worker claims the step and dies: its lease runs out."""
    assert store.claim(step_id, owner, lease=30, max_attempts=3) is not None
    with store.tx() as conn:
        conn.execute(update(Step).where(Step.id == step_id).values(lease_until=0))


def test_an_llm_step_that_crashes_its_worker_n_times_fails_its_agent_with_the_reason(tmp_path, store, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    for n in range(s.step_max_crashes):
        crash(store, ref.step_id)
        if n < s.step_max_crashes - 1:
            assert [r.step_id for r in store.sweep(republish_after=5, max_attempts=s.step_max_crashes)] == [ref.step_id]
    with LLMClient(s) as llm:  # the broker redelivers the message: nobody takes the step a 4th time
        assert StepExecutor(store, llm, ToolRegistry([EchoTool()]), s, owner_id()).execute(ref.step_id) == []
    assert store.sweep(republish_after=5, max_attempts=s.step_max_crashes) == []
    summary = store.run_summary(run_id)
    assert (summary.status, summary.reason) == ("failed", "step crashed its worker 3 times; not retried")
    assert sim.stats()["by_run"].get(run_id, 0) == 0
    with store.read() as conn:
        step = conn.execute(select(Step.status, Step.error).where(Step.id == ref.step_id)).one()
    assert tuple(step) == ("failed", "step crashed its worker 3 times; not retried")


def test_a_tool_step_that_crashes_its_worker_n_times_is_a_tool_error_and_the_agent_goes_on(
    tmp_path, store, db_url, sim
):
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    with LLMClient(s) as llm:
        (tool_ref,) = StepExecutor(store, llm, ToolRegistry([EchoTool()]), s, owner_id()).execute(ref.step_id)
    for _ in range(3):
        crash(store, tool_ref.step_id)
        refs = store.sweep(republish_after=5, max_attempts=3)
    (next_llm,) = refs
    assert next_llm.kind == "llm" and next_llm.agent_id == tool_ref.agent_id  # the agent's next turn
    assert store.run_summary(run_id).status == "running"
    with store.read() as conn:
        result = conn.execute(
            select(Message.content).where(Message.run_id == run_id, Message.role == "tool")
        ).scalar_one()
    assert result.startswith("The create_subagent tool call crashed the worker running it 3 times")


def test_a_dead_local_owner_found_on_start_counts_as_a_crash(tmp_path, store, db_url, sim):
    """``swarm resume`` / the server's start frees steps of dead local processes at once; the
    third dead owner of the same step ends it instead of starting it a fourth time."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:gone"
    s = make_settings(tmp_path, db_url, sim.url)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    from swarm.runtime import pid_is_dead

    for n in range(3):
        assert store.claim(ref.step_id, owner, lease=30, max_attempts=3) is not None
        assert store.release_dead_owners(run_id, pid_is_dead, max_attempts=3) == (1 if n < 2 else 0)
    summary = store.run_summary(run_id)
    assert (summary.status, summary.reason) == ("failed", "step crashed its worker 3 times; not retried")


def test_a_ready_step_with_no_attempts_left_is_failed_not_left_ready(tmp_path, store, db_url, sim):
    """Two crashes under a limit of 5, then the operator lowers SWARM_STEP_MAX_CRASHES to 2:
    nobody may claim the ready step any more, so the sweeper fails it (it used to stay ready,
    re-published every few seconds, until the run's 6-hour wall limit)."""
    s = make_settings(tmp_path, db_url, sim.url, step_max_crashes=2)
    run_id, (ref,) = store.create_run(run_spec(s, "t #sim agents=1 tools=1 tool=echo"))
    for _ in range(2):
        assert store.claim(ref.step_id, "w", lease=30, max_attempts=5) is not None
        with store.tx() as conn:
            conn.execute(update(Step).where(Step.id == ref.step_id).values(lease_until=0))
        store.sweep(republish_after=5, max_attempts=5)
    with store.tx() as conn:  # ready, and not started for a while
        conn.execute(update(Step).where(Step.id == ref.step_id).values(ready_at=0))
    assert store.claim(ref.step_id, "w", lease=30, max_attempts=s.step_max_crashes) is None
    assert store.sweep(republish_after=5, max_attempts=s.step_max_crashes) == []
    summary = store.run_summary(run_id)
    assert summary.status == "failed"
    assert summary.reason == "step used up its 2 attempts without finishing; not retried"
