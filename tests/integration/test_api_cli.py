"""The CLI against a server (--api / SWARM_API_URL) works like the CLI on the local database."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import swarm.cli.runs  # registers the commands
import swarm.cli.server  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.exceptions import ConfigError, NotFound, StateError
from swarm.runs import RunRequest
from swarm.runs.remote import RemoteRuns, ServerUnavailable
from tests.conftest import make_settings


@pytest.fixture
def api(tmp_path, sqlite_url, sim, monkeypatch):
    with live_api(make_settings(tmp_path, sqlite_url, sim.url)) as a:
        # The CLI process has no database of its own: everything must go through the server.
        monkeypatch.setenv("SWARM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
        monkeypatch.setenv("SWARM_API_URL", a.url)
        monkeypatch.setenv("SWARM_API_KEY", a.key("cli"))
        yield a


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_run_ls_show_cancel_resume_through_the_server(api, tmp_path):
    note = tmp_path / "notes.txt"
    note.write_text("attached facts")
    code, out = cli(
        "run", "remote #sim agents=3 tools=2 tool=echo", "--attach", str(note), "--max-subagents", "5", "--json"
    )
    assert code == 0, out
    summary = json.loads(out)
    assert summary["status"] == "succeeded" and summary["subagents"] == 3 and summary["max_subagents"] == 5
    assert summary["tenant"] == "cli"
    assert api.store.artifacts(summary["id"])["notes.txt"][1] == b"attached facts"

    code, out = cli("ls", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [summary["id"]]
    code, out = cli("show", summary["id"], "--json")
    assert code == 0 and len(json.loads(out)["agents"]) == 4

    code, out = cli("run", "detached #sim agents=4 tools=20 tool=echo latency=0.2", "--detach")
    run_id = out.strip()
    assert code == 0 and len(run_id) == 32
    code, out = cli("cancel", run_id, "--json")
    assert code == 0 and json.loads(out) == {"id": run_id, "status": "cancelled", "changed": True}
    code, out = cli("resume", run_id, "--detach")
    assert code == 0 and out.strip() == run_id
    code, out = cli("cancel", run_id)
    assert code == 0 and "cancelled" in out
    code, out = cli("resume", run_id, "--json")  # follows the run to its end this time
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    assert api.store.run_summary(run_id).status == "succeeded"
    code, out = cli("resume", run_id)
    assert code == 3 and "already succeeded" in out


def test_errors_through_the_server(api, monkeypatch):
    code, out = cli("show", "c" * 32)
    assert code == 2 and "no run" in out
    monkeypatch.setenv("SWARM_API_KEY", "swk_bad_key")
    code, out = cli("ls")
    assert code == 1 and "refused the API key" in out and "swk_bad_key" not in out
    code, out = cli("ls", "--api", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach" in out


def test_client_translates_errors(api):
    good = RemoteRuns(api.url, api.key("client"))
    with pytest.raises(NotFound):
        good.summary("d" * 32)
    run_id = good.submit(RunRequest(task="c #sim agents=1 tools=1 tool=echo"))
    assert [e["type"] for e in good.events(run_id)][-1] in ("llm_done", "run_done")
    with pytest.raises(StateError):
        good.resume(run_id)
    with pytest.raises(ConfigError):
        RemoteRuns(api.url, "swk_x_y").list_runs()
    with pytest.raises(ServerUnavailable):
        RemoteRuns("http://127.0.0.1:9", "swk_x_y").list_runs()
    with pytest.raises(ConfigError):
        RemoteRuns("", "k")
