"""Workspace quotas and bounded memory: what a tool call writes beyond a run's limits is not saved
and the model is told; a run's files are restored and saved a few MiB at a time, never all in memory."""

from __future__ import annotations

import hashlib
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select

from swarm.domain.workspace import Quota
from swarm.engine.executor import StepExecutor
from swarm.engine.file_cache import FileCache
from swarm.engine.workspace import Workspace
from swarm.llm.client import LLMClient
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.models import Message
from swarm.store.store import StateStore, owner_id
from swarm.store.types import Attachment
from swarm.tools.builtin import default_registry
from tests.conftest import make_settings

KIB, MIB = 1024, 1024 * 1024


def _tool_messages(store, run_id):
    with store.read() as conn:
        return [
            str(c)
            for (c,) in conn.execute(
                select(Message.content).where(Message.run_id == run_id, Message.role == "tool").order_by(Message.id)
            )
        ]


def test_a_file_over_the_quota_is_not_saved_and_the_model_is_told(tmp_path, db_url, sim):
    code = "open('small.txt', 'w').write('kept')\nopen('big.bin', 'wb').write(b'x' * 100_000)\nprint('wrote two files')"
    s = make_settings(tmp_path, db_url, sim.url, workspace_max_file_bytes=64 * KIB)
    store = StateStore.from_url(db_url)
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(run_spec(s, f"write files {call_directive('python', {'code': code})}"))
        summary = rt.wait(run_id, timeout=120)
    assert summary.status == "succeeded", summary.reason

    (result,) = _tool_messages(store, run_id)
    assert result.startswith("wrote two files")
    assert "[workspace: 1 file written by this call was NOT saved" in result
    assert "- big.bin (97.7 KiB): larger than the limit of 64 KiB per file" in result
    # The model read it: the simulated model's answer quotes the result it was sent.
    assert "big.bin (97.7 KiB): larger than the limit" in (summary.result or "")
    assert set(store.artifacts(run_id)) == {"small.txt"}
    store.engine.dispose()


def _echo_claims(store, settings, n, attachments=()):
    """A run whose subagents are about to make ``n`` echo calls, and the claims of those calls."""
    # The newline ends the directive (the sim joins content parts without a separator).
    spec = run_spec(settings, f"t #sim agents={n} tools=1 tool=echo\n")
    if attachments:
        import dataclasses

        spec = dataclasses.replace(spec, attachments=tuple(attachments))
    run_id, refs = store.create_run(spec)
    with LLMClient(settings) as llm:
        ex = StepExecutor(store, llm, default_registry(settings), settings, owner_id())
        queue, echoes = list(refs), []
        while queue and len(echoes) < n:
            ref = queue.pop(0)
            if ref.tool_name == "echo":
                echoes.append(ref)
            else:
                queue += ex.execute(ref.step_id)
    assert len(echoes) == n
    claims = [store.claim(ref.step_id, "w", lease=60) for ref in echoes]
    assert all(c is not None for c in claims)
    return run_id, claims


def test_parallel_calls_cannot_exceed_the_quota_together(tmp_path, db_url, sim):
    """Two calls restored from the same state each write a file that fits on its own; the quota is
    checked again at commit against what is committed, so the second one is refused, and told."""
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    run_id, (a, b) = _echo_claims(store, s, 2)
    quota = Quota(max_bytes=100 * KIB, max_files=10, max_file_bytes=80 * KIB)
    with Workspace(run_id, store, quota=quota) as wa, Workspace(run_id, store, quota=quota) as wb:
        (wa.path / "a.bin").write_bytes(b"a" * 60 * KIB)
        (wb.path / "b.bin").write_bytes(b"b" * 60 * KIB)
        changes_a, changes_b = wa.changed(), wb.changed()
        assert set(changes_a.files) == {"a.bin"} and set(changes_b.files) == {"b.bin"}
        store.commit_tool(a, "call a", False, changes_a)
        store.commit_tool(b, "call b", False, changes_b)
    assert set(store.artifacts(run_id)) == {"a.bin"}
    msgs = _tool_messages(store, run_id)
    assert "call a" in msgs and not any("NOT saved" in m for m in msgs if m.startswith("call a"))
    (told,) = [m for m in msgs if m.startswith("call b")]
    assert "- b.bin (60 KiB): the run's files would exceed 100 KiB in total (60 KiB already kept)" in told
    store.engine.dispose()


def test_file_count_and_total_quotas_refuse_only_what_does_not_fit(tmp_path):
    quota = Quota(max_bytes=10 * KIB, max_files=3, max_file_bytes=8 * KIB)
    with Workspace("r", {"old.txt": ("", b"o" * 2 * KIB)}, quota=quota) as ws:
        (ws.path / "old.txt").write_bytes(b"O" * 2 * KIB)  # same size, new content: always kept
        for name in ("n1", "n2", "n3"):
            (ws.path / name).write_bytes(b"n" * KIB)
        (ws.path / "huge").write_bytes(b"h" * 9 * KIB)
        changes = ws.changed()
    assert "old.txt" in changes.files
    # old.txt + two new files make three: one new file and the huge one are refused.
    assert len(changes.files) == 3
    reasons = sorted(r.reason for r in changes.refused)
    assert reasons == ["larger than the limit of 8 KiB per file", "the run already keeps the most files it may (3)"]
    note = changes.note_on("output")
    assert note.startswith("output\n\n[workspace: 2 files written by this call were NOT saved")


def test_unchanged_files_are_not_saved_again_even_when_rewritten(tmp_path):
    with Workspace("r", {"a.txt": ("", b"same"), "d/b.txt": ("", b"other")}) as ws:
        (ws.path / "a.txt").write_bytes(b"same")  # rewritten (new mtime), same content: as a sandbox copies back
        (ws.path / "d" / "b.txt").write_bytes(b"changed")
        os.symlink("/etc/passwd", ws.path / "link")
        changes = ws.changed()
    assert set(changes.files) == {"d/b.txt"}
    assert not changes.refused


def test_restore_reads_a_few_mib_at_a_time_and_a_large_file_in_pieces(tmp_path, db_url, sim):
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    big = os.urandom(3 * MIB + 17)
    smalls = {f"s{i}.txt": os.urandom(100 * KIB) for i in range(10)}
    atts = [Attachment("big.bin", big, "application/octet-stream")]
    atts += [Attachment(n, d, "text/plain") for n, d in smalls.items()]
    run_id, _ = store.create_run(_spec(s, atts))
    index = store.artifact_index(run_id)
    pieces = list(store.artifact_contents(run_id, index, read_bytes=MIB))
    assert max(len(p) for _, _, p in pieces) <= MIB
    assert [len(p) for path, _, p in pieces if path == "big.bin"] == [MIB, MIB, MIB, 17]
    assert b"".join(p for path, _, p in pieces if path == "big.bin") == big
    # 1 MiB of small files per query: ten 100 KiB files come back whole, each once.
    assert sorted(path for path, _, _ in pieces if path != "big.bin") == sorted(smalls)
    with Workspace(run_id, store) as ws:
        assert (ws.path / "big.bin").read_bytes() == big
        assert all((ws.path / n).read_bytes() == d for n, d in smalls.items())
    store.engine.dispose()


def _spec(settings, attachments):
    import dataclasses

    return dataclasses.replace(run_spec(settings, "files"), attachments=tuple(attachments))


@pytest.mark.timeout(300)
def test_memory_stays_bounded_while_restoring_and_saving_a_large_workspace(tmp_path, db_url, sim):
    """48 MiB of files restored, half of them changed and saved: Python's peak allocation stays a
    fraction of that (the files pass through memory a few MiB at a time, never all at once)."""
    s = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    atts = [Attachment(f"f{i:02}.bin", os.urandom(4 * MIB), "application/octet-stream") for i in range(12)]
    run_id, (claim,) = _echo_claims(store, s, 1, atts)
    del atts
    quota = Quota(max_bytes=256 * MIB, max_files=100, max_file_bytes=8 * MIB)
    tracemalloc.start()
    try:
        with Workspace(run_id, store, quota=quota) as ws:
            for i in range(0, 12, 2):  # change six files without building their bytes in Python
                with open(ws.path / f"f{i:02}.bin", "ab") as f:
                    f.write(b"!")
            changes = ws.changed()
            assert len(changes.files) == 6
            store.commit_tool(claim, "appended", False, changes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB, f"peak Python allocation {peak / MIB:.1f} MiB for 48 MiB of files"
    index = {i.path: i for i in store.artifact_index(run_id)}
    assert index["f00.bin"].size == 4 * MIB + 1 and index["f01.bin"].size == 4 * MIB
    store.engine.dispose()


def test_the_local_cache_spares_database_reads_and_never_serves_a_damaged_copy(tmp_path, sqlite_url, sim):
    s = make_settings(tmp_path, sqlite_url, sim.url)
    store = StateStore.from_url(sqlite_url)
    files = {"a.txt": b"alpha" * 1000, "dir/b.bin": os.urandom(50 * KIB)}
    run_id, _ = store.create_run(_spec(s, [Attachment(n, d, "text/plain") for n, d in files.items()]))

    read: list[str] = []

    class Counting:
        def artifact_index(self, rid):
            return store.artifact_index(rid)

        def artifact_contents(self, rid, infos):
            for path, sha, piece in store.artifact_contents(rid, infos):
                read.append(path)
                yield path, sha, piece

    cache = FileCache(tmp_path / "cache", max_bytes=10 * MIB)
    with Workspace(run_id, Counting(), cache=cache) as ws:
        assert sorted(read) == ["a.txt", "dir/b.bin"]
    read.clear()
    with Workspace(run_id, Counting(), cache=cache) as ws:
        assert read == []  # every file came from the cache
        assert all((ws.path / n).read_bytes() == d for n, d in files.items())
        assert not ws.changed().files
    sha = hashlib.sha256(files["a.txt"]).hexdigest()
    (tmp_path / "cache" / sha[:2] / sha).write_bytes(b"tampered")
    with Workspace(run_id, Counting(), cache=cache) as ws:
        assert read == ["a.txt"]  # the damaged copy was refused and the file read from the database
        assert (ws.path / "a.txt").read_bytes() == files["a.txt"]
    shutil.rmtree(tmp_path / "cache")
    store.engine.dispose()


def test_a_cache_past_its_size_drops_the_least_recently_used(tmp_path):
    cache = FileCache(tmp_path / "cache", max_bytes=250 * KIB)
    for i in range(5):
        src = tmp_path / f"f{i}"
        src.write_bytes(bytes([i]) * 100 * KIB)
        sha = hashlib.sha256(src.read_bytes()).hexdigest()
        cache.add(src, sha)
        entry = tmp_path / "cache" / sha[:2] / sha
        os.utime(entry, (1000 + i, 1000 + i))
    cache.trim()
    kept = sorted(p.read_bytes()[0] for p in Path(tmp_path / "cache").rglob("*") if p.is_file())
    assert kept == [3, 4]
