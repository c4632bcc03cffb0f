"""Run ids typed short: any unique prefix works in every command, locally and through a server;
an ambiguous one says so, one of another tenant's runs is not found."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from typer.testing import CliRunner

import swarm.cli.runs  # registers the commands
import swarm.cli.server  # noqa: F401
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.runtime import run_spec
from swarm.store.store import StateStore
from tests.conftest import make_settings


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _runs_sharing_a_first_character(store: StateStore, settings, tenant: str) -> tuple[list[str], str]:
    """Runs until two ids start alike (at most 17: there are 16 hex digits); the ids and that digit."""
    by_first: dict[str, list[str]] = defaultdict(list)
    while True:
        run_id, _ = store.create_run(run_spec(settings, "t", tenant=tenant))
        by_first[run_id[0]].append(run_id)
        if len(by_first[run_id[0]]) == 2:
            return [i for ids in by_first.values() for i in ids], run_id[0]


@pytest.fixture(params=["local", "remote"])
def where(request, tmp_path, sqlite_url, sim, monkeypatch):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    if request.param == "local":
        monkeypatch.setenv("SWARM_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("SWARM_HOME", str(tmp_path))
        store = StateStore.from_url(sqlite_url)
        yield store, s, None
        store.engine.dispose()
        return
    with live_api(s) as api:
        monkeypatch.setenv("SWARM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
        monkeypatch.setenv("SWARM_API_URL", api.url)
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-a"))
        yield api.store, s, "tenant-a"


def test_a_unique_prefix_names_its_run_everywhere(where):
    store, settings, tenant = where
    ids, shared = _runs_sharing_a_first_character(store, settings, tenant)
    run_id = ids[0]
    prefix = next(run_id[:n] for n in range(1, 33) if sum(i.startswith(run_id[:n]) for i in ids) == 1)

    code, out = cli("show", prefix, "--json")
    assert code == 0 and json.loads(out)["id"] == run_id
    code, out = cli("show", prefix.upper(), "--json")
    assert code == 0 and json.loads(out)["id"] == run_id
    code, out = cli("cancel", prefix, "--json")
    assert code == 0 and json.loads(out) == {"id": run_id, "status": "cancelled", "changed": True}
    code, out = cli("export", prefix)
    assert code == 0 and json.loads(out.splitlines()[0])["id"] == run_id
    code, out = cli("watch", prefix, "--json")  # a cancelled run: its events, then exit 4
    assert code == 4 and json.loads(out.splitlines()[-1])["type"] == "run_done"

    code, out = cli("show", shared, "--json")
    assert code == 3 and "names more than one run" in json.loads(out)["message"]
    missing = next(c for c in "0123456789abcdef" if not any(i.startswith(c) for i in ids))
    code, out = cli("show", missing)
    assert code == 2 and "no run" in out
    code, out = cli("show", "not-an-id")
    assert code == 3 and "32 hex characters" in out


def test_another_tenants_run_is_not_found_by_prefix(tmp_path, sqlite_url, sim, monkeypatch):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    with live_api(s) as api:
        theirs, _ = api.store.create_run(run_spec(s, "t", tenant="tenant-b"))
        monkeypatch.setenv("SWARM_API_URL", api.url)
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-a"))
        code, out = cli("show", theirs[:8])
        assert code == 2 and "no run" in out
