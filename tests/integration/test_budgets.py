"""Spend budgets per run, with the simulated model over HTTP: a run stops at its cap with reason
`budget`, never spending past it; resumed with a raised budget it finishes without repeating a
committed call; bad budgets are refused (422, CLI exit 3)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.domain import pricing, prompts
from swarm.domain.pricing import Usage
from swarm.domain.status import StepStatus
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import MESSAGES, RUNS, STEPS
from swarm.store.store import StateStore
from tests.conftest import make_settings

TASK = "budget #sim agents=6 tools=4 tool=echo"


def served_cost(sim, run_id: str) -> int:
    """What the provider billed: every request it served for the run, at kimi-k2.5 prices."""
    price = pricing.BUILTIN["kimi-k2.5"]
    return sum(
        pricing.cost(Usage(c["prompt_tokens"], c["cached_tokens"], c["completion_tokens"]), price) or 0
        for c in sim.usage(run_id)["calls"]
    )


@pytest.mark.timeout(180)
def test_a_run_stops_at_its_budget_and_resumes_with_a_raised_one_repeating_nothing(tmp_path, pg_url, sim):
    s = make_settings(tmp_path, pg_url, sim.url, llm_max_tokens=256)
    store = StateStore.from_url(pg_url, pool_size=20)
    with LocalRuntime(s, store=store) as rt:
        full = rt.wait(rt.submit(run_spec(s, TASK)), timeout=100)
        assert full.status == "succeeded" and full.cost_usd
        cap = round(full.cost_usd / 2, 6)
        run_id = rt.submit(run_spec(s, TASK + " again", max_usd=cap))
        stopped = rt.wait(run_id, timeout=100)

        assert stopped.status == "failed"
        assert stopped.reason.startswith("budget:") and "swarm resume" in stopped.reason
        assert stopped.max_usd == cap
        # Neither the recorded spend nor what the provider billed passes the cap.
        with store.read() as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
            notes = conn.execute(
                select(MESSAGES.c.content).where(MESSAGES.c.run_id == run_id, MESSAGES.c.role == "tool")
            ).scalars()
            wrapped = [n for n in notes if "Wrap up now" in str(n)]
            committed = set(
                conn.execute(
                    select(STEPS.c.id).where(
                        STEPS.c.run_id == run_id, STEPS.c.kind == "llm", STEPS.c.status == StepStatus.SUCCEEDED
                    )
                ).scalars()
            )
        assert row.cost_pico <= row.max_cost_pico
        assert served_cost(sim, run_id) <= row.max_cost_pico
        # Past 90 % of the budget the model was told to wrap up, on its tool results.
        assert wrapped and prompts.BUDGET_WRAP_UP.split("{")[0] in str(wrapped[0])
        time.sleep(0.5)  # a call in flight when the run stopped comes back (and is discarded)
        resumed_at = time.time()

        rt.resume(run_id, max_cost_pico=int(full.cost_usd * 3 * pricing.PICO))
        done = rt.wait(run_id, timeout=100)
        assert done.status == "succeeded", done.reason
        assert done.llm_calls == full.llm_calls and done.tool_calls == full.tool_calls
        # Zero repeated committed model calls: no call committed before the stop was requested
        # again (only a call in flight when the run stopped, whose answer was discarded, may be).
        log = [e for e in sim.log(run_id) if e["status"] == 200]
        again = {e["step_id"] for e in log if e["t"] >= resumed_at}
        assert committed and not committed & again
        first = [e["key"] for e in log if e["t"] < resumed_at and e["step_id"] in committed]
        assert not set(first) & {e["key"] for e in log if e["t"] >= resumed_at}
        assert len({e["step_id"] for e in log}) == done.llm_calls
        with store.read() as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
        assert (row.reserved_pico, row.reserved_tokens) == (0, 0)  # every reservation settled
        assert row.cost_pico == served_cost(sim, run_id)
    store.engine.dispose()


@pytest.mark.timeout(120)
def test_a_token_budget_stops_the_run_the_same_way(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url, llm_max_tokens=256)
    with LocalRuntime(s) as rt:
        stopped = rt.wait(rt.submit(run_spec(s, TASK, max_tokens=20_000)), timeout=100)
    assert stopped.status == "failed" and stopped.reason.startswith("budget:")
    assert "--max-tokens" in stopped.reason
    assert stopped.tokens_in + stopped.tokens_out <= 20_000


@pytest.mark.timeout(120)
def test_a_usd_budget_on_a_model_without_a_price_ends_the_run_with_a_clear_reason(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url, model="mystery-model")
    with LocalRuntime(s) as rt:
        out = rt.wait(rt.submit(run_spec(s, TASK, max_usd=1.0)), timeout=60)
    assert out.status == "failed" and out.llm_calls == 0
    assert out.reason == prompts.BUDGET_NO_PRICE.format(model="mystery-model")


@pytest.fixture
def api(tmp_path, sqlite_url, sim, monkeypatch):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url, llm_max_tokens=256)) as a:
        monkeypatch.setenv("SWARM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
        monkeypatch.setenv("SWARM_API_URL", a.url)
        monkeypatch.setenv("SWARM_API_KEY", a.key("cli"))
        yield a


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.timeout(120)
def test_run_and_resume_with_budgets_from_the_cli_through_the_rest_api(api):
    code, out = cli("run", TASK, "--json")
    assert code == 0, out
    cost = json.loads(out)["cost_usd"]
    code, out = cli("run", TASK + " capped", "--max-usd", f"{cost / 3:.6f}", "--json")
    assert code == 4, out
    stopped = json.loads(out)
    assert stopped["status"] == "failed" and stopped["reason"].startswith("budget:")
    assert stopped["cost_usd"] <= stopped["max_usd"] == pytest.approx(cost / 3, abs=1e-6)
    code, out = cli("resume", stopped["id"], "--max-usd", f"{cost * 3:.6f}", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["status"] == "succeeded" and done["max_usd"] == pytest.approx(cost * 3, abs=1e-6)


@pytest.mark.parametrize("bad", [-1, 0, "abc", "1", True, None])
def test_bad_budgets_are_refused_with_422(api, bad):
    with api.client(api.key()) as c:
        for field in ("max_usd", "max_tokens"):
            if bad is None:
                continue
            resp = c.post("/v1/runs", json={"task": "t", "limits": {field: bad}})
            assert resp.status_code == 422, (field, bad, resp.text)
            resp = c.post(f"/v1/runs/{'a' * 32}/resume", json={field: bad})
            assert resp.status_code == 422, (field, bad, resp.text)
        assert c.post("/v1/runs", json={"task": "t", "limits": {"max_tokens": 1.5}}).status_code == 422


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-usd", "-1"), ("--max-usd", "0"), ("--max-usd", "abc"), ("--max-tokens", "1.5"), ("--max-tokens", "0")],
)
def test_bad_budgets_are_a_cli_error(api, option, value):
    code, out = cli("run", "t", option, value)
    assert code == 2 and option in out  # a usage error (64 from `python -m swarm`)
    code, out = cli("resume", "a" * 32, option, value)
    assert code == 2 and option in out


@pytest.mark.timeout(60)
def test_a_call_that_fails_gives_its_reservation_back(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    store = StateStore.from_url(sqlite_url)
    with LocalRuntime(s, store=store) as rt:
        out = rt.wait(rt.submit(run_spec(s, "t #sim agents=1 tools=1 http=401", max_usd=5.0)), timeout=30)
    assert out.status == "failed" and "LLMAuthError" in (out.reason or "")
    with store.read() as conn:
        row = conn.execute(select(RUNS).where(RUNS.c.id == out.id)).one()
    assert (row.reserved_pico, row.reserved_tokens, row.cost_pico) == (0, 0, 0)
    store.engine.dispose()
