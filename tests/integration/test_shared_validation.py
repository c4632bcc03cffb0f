"""The CLI and the API refuse the same bad run requests with the same words: one table of bounds
(``domain/run_limits.py``) behind the CLI's options and the API's request models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine

from swarm.api.testing import live_api
from swarm.domain import run_limits
from swarm.store.migrate import upgrade
from tests.conftest import make_settings

# (API limits or task, CLI arguments after `swarm run`)
BAD: list[tuple[dict[str, object], list[str]]] = [
    ({"max_subagents": -1}, ["t", "--max-subagents", "-1"]),
    ({"max_subagents": 100_001}, ["t", "--max-subagents", "100001"]),
    ({"max_tool_calls": -5}, ["t", "--max-tool-calls", "-5"]),
    ({"max_steps_per_agent": 0}, ["t", "--max-steps", "0"]),
    ({"max_wall_seconds": 0}, ["t", "--max-wall", "0"]),
    ({"max_wall_seconds": 30 * 86400 + 1}, ["t", "--max-wall", str(30 * 86400 + 1)]),
    ({"max_depth": 17}, ["t", "--max-depth", "17"]),
    ({"max_spawns_per_turn": 0}, ["t", "--max-spawns-per-turn", "0"]),
    ({"max_usd": -1}, ["t", "--max-usd", "-1"]),
    ({"max_usd": 0}, ["t", "--max-usd", "0"]),
    ({"max_tokens": 0}, ["t", "--max-tokens", "0"]),
    ({"task": ""}, [""]),
]


@pytest.fixture(scope="module")
def cli_answers(tmp_path_factory) -> dict[int, subprocess.CompletedProcess[str]]:
    """Every bad command line, run as a user runs it (`python -m swarm`), two at a time."""
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_DATABASE_URL": "", "SWARM_API_URL": "", "SWARM_BROKER_URL": ""}

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "swarm", "run", *args, "--json"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    with ThreadPoolExecutor(2) as pool:
        return dict(enumerate(pool.map(run, [args for _, args in BAD])))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{home / 'swarm.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    with live_api(make_settings(home, url, "http://127.0.0.1:9")) as a:
        yield a


@pytest.mark.parametrize("case", range(len(BAD)), ids=[str(b[0]) for b in BAD])
def test_cli_and_api_refuse_a_bad_value_with_the_same_message(case, cli_answers, api):
    given, _ = BAD[case]
    body = {"task": given["task"]} if "task" in given else {"task": "t", "limits": given}
    with api.client(api.key()) as c:
        resp = c.post("/v1/runs", json=body)
    assert resp.status_code == 422, resp.text
    fields = resp.json()["fields"]
    assert len(fields) == 1, fields
    message = fields[0]["message"]

    out = cli_answers[case]
    assert out.returncode == 64, (out.stdout, out.stderr)  # the usage exit code
    error = json.loads(out.stdout)
    assert error == {"error": "usage", "message": message, "exit_code": 64}
    # The words come from the one table (and name the limit both ways).
    name = next(iter(given))
    if name != "task":
        bound = run_limits.BOUNDS[name]
        assert message.startswith(f"{name} ({bound.flag}) must be ")


def test_the_api_schema_states_the_same_bounds(api):
    with api.client(api.key()) as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]["Limits"]["properties"]
    for name, bound in run_limits.BOUNDS.items():
        variants = schema[name].get("anyOf", [schema[name]])
        number = next(v for v in variants if v.get("type") in ("integer", "number"))
        assert {k: number[k] for k in bound.json_schema()} == bound.json_schema(), name
