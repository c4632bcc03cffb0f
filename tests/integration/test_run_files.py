"""A run's files out: listed with the step that wrote them and downloaded, on the local database
(the CLI), through the REST API and by the CLI against a server; paths that would leave the run's
files (``..``, absolute, backslashes, NUL, symlinks) are refused, and another tenant's run is 404."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import swarm.cli.files
import swarm.cli.runs  # noqa: F401  (registers the commands)
from swarm.api.testing import live_api
from swarm.cli.common import app
from swarm.domain.files import check_path, media_type
from swarm.exceptions import InputError
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.store import StateStore
from tests.conftest import make_settings

#: Files in a subdirectory, a binary one, and a symlink out of the workspace (never saved).
WRITE = """
import os
os.makedirs("out/deep", exist_ok=True)
open("out/deep/result.txt", "w").write("forty-two")
open("blob.bin", "wb").write(bytes(range(256)))
os.symlink("/etc/passwd", "link")
print("wrote")
"""


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _run(settings, store: StateStore, tenant: str | None = None) -> str:
    with LocalRuntime(settings, store=store) as rt:
        run_id = rt.submit(run_spec(settings, "files " + call_directive("python", {"code": WRITE}), tenant=tenant))
        done = rt.wait(run_id, timeout=60)
    assert done.status == "succeeded", done.reason
    return run_id


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "a/../../b", "/etc/passwd", "a\\b", "a\x00b", "a//b", "./a", "a/", "x" * 600]
)
def test_paths_that_leave_the_workspace_are_refused(bad):
    with pytest.raises(InputError):
        check_path(bad)


def test_a_good_path_passes_and_only_images_are_served_as_themselves():
    assert check_path("out/deep/result.txt") == "out/deep/result.txt"
    assert check_path("plots/fig 1.PNG") == "plots/fig 1.PNG"
    assert media_type("plots/fig.PNG") == "image/png" and media_type("a.jpeg") == "image/jpeg"
    assert media_type("page.html") == media_type("img.svg") == media_type("png") == "application/octet-stream"


def test_files_listed_and_downloaded_on_the_local_database(tmp_path, db_url, sim, monkeypatch):
    settings = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    run_id = _run(settings, store)
    monkeypatch.setenv("SWARM_DATABASE_URL", db_url)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path))

    code, out = cli("files", run_id, "--json")
    assert code == 0, out
    listed = {f["path"]: f for f in json.loads(out)["files"]}
    assert set(listed) == {"out/deep/result.txt", "blob.bin"}  # the symlink was never saved
    python_step = store.steps_timeline(run_id)
    writer = next(s["id"] for s in python_step if s["tool_name"] == "python")
    assert {f["step_id"] for f in listed.values()} == {writer}
    assert listed["blob.bin"]["size"] == 256
    code, out = cli("files", run_id[:8])
    assert code == 0 and "out/deep/result.txt" in out and writer in out

    dest = tmp_path / "dl"
    code, out = cli("files", run_id, "--get", "out/deep/result.txt", "-o", str(dest))
    assert code == 0, out
    assert (dest / "out/deep/result.txt").read_text() == "forty-two"
    code, out = cli("files", run_id, "--all", "-o", str(tmp_path / "all"), "--json")
    assert code == 0, out
    assert (tmp_path / "all/blob.bin").read_bytes() == bytes(range(256))
    assert len(json.loads(out)["saved"]) == 2

    for bad in ("../escape.txt", "/etc/passwd", "link"):
        code, out = cli("files", run_id, "--get", bad, "-o", str(tmp_path / "bad"))
        assert code in (2, 3), out
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "bad").exists()
    # A symlink planted in the download directory is not followed out of it.
    (tmp_path / "trap").mkdir()
    (tmp_path / "trap/out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    code, out = cli("files", run_id, "--get", "out/deep/result.txt", "-o", str(tmp_path / "trap"))
    assert code == 3 and "outside" in out, out
    assert not (tmp_path / "elsewhere/deep").exists()
    store.engine.dispose()


def test_files_through_the_api_are_tenant_checked_and_paths_validated(tmp_path, sqlite_url, sim, monkeypatch):
    settings = make_settings(tmp_path, sqlite_url, sim.url)
    with live_api(settings) as api:
        run_id = _run(settings, api.store, tenant="tenant-a")
        mine, theirs = api.client(api.key("tenant-a")), api.client(api.key("tenant-b"))
        listed = mine.get(f"/v1/runs/{run_id}/files").json()
        assert [f["path"] for f in listed["files"]] == ["blob.bin", "out/deep/result.txt"]
        got = mine.get(f"/v1/runs/{run_id}/files/out/deep/result.txt")
        assert got.status_code == 200 and got.content == b"forty-two"
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["x-swarm-sha256"] == listed["files"][1]["sha256"]

        body = {"task": "t #sim agents=0"}
        assert mine.post("/v1/runs", json=body).json()["links"]["files"].endswith("/files")
        # Another tenant's run does not exist for them.
        assert theirs.get(f"/v1/runs/{run_id}/files").status_code == 404
        assert theirs.get(f"/v1/runs/{run_id}/files/blob.bin").status_code == 404
        # Paths that would leave the run's files, sent raw (no client-side normalisation).
        for raw in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%5Cb", "a%00b", "out/%2E%2E/blob.bin", "out//x"):
            resp = mine.get(f"/v1/runs/{run_id}/files/{raw}")
            assert resp.status_code == 422, (raw, resp.text)
        assert mine.get(f"/v1/runs/{run_id}/files/link").status_code == 404  # symlinks are never saved
        assert mine.get(f"/v1/runs/{run_id}/files/nope.txt").status_code == 404

        # The CLI against the server: the same listing and downloads, no database of its own.
        monkeypatch.setenv("SWARM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
        monkeypatch.setenv("SWARM_API_URL", api.url)
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-a"))
        code, out = cli("files", run_id, "--json")
        assert code == 0 and [f["path"] for f in json.loads(out)["files"]] == ["blob.bin", "out/deep/result.txt"]
        code, out = cli("files", run_id, "--all", "-o", str(tmp_path / "remote"))
        assert code == 0, out
        assert Path(tmp_path / "remote/out/deep/result.txt").read_text() == "forty-two"
        assert (tmp_path / "remote/blob.bin").read_bytes() == bytes(range(256))
        code, out = cli("files", run_id, "--get", "../x", "-o", str(tmp_path / "remote"))
        assert code == 3, out
        monkeypatch.setenv("SWARM_API_KEY", api.key("tenant-b"))
        code, out = cli("files", run_id, "--json")
        assert code == 2, out
