"""A run's files on a worker's local disk, for the duration of one tool call.

The database holds the truth (:class:`swarm.store.models.Artifact`), so a step may run on any
machine: the files are restored before the call and what the tool changed is saved with its result.

Memory stays bounded whatever the size of a run's files. A restore writes them to disk about a MiB
of database reads at a time (:meth:`StateStore.artifact_contents`), or copies them from this
machine's :class:`FileCache`. :meth:`Workspace.changed` finds what changed by file status and by
sha256 computed in chunks, and the commit reads the changed files one at a time.

Quotas (:class:`Quota`: files, bytes in total, bytes per file) bound what a run keeps. A file that
would take the run past them is not saved, and the tool result tells the model which and why
(:meth:`Changes.note_on`): never silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from swarm.domain import sanitize
from swarm.domain.workspace import Changes, FileChange, Quota, Tally
from swarm.engine.file_cache import CHUNK_BYTES, FileCache
from swarm.exceptions import StoreConflict
from swarm.store.types import ArtifactInfo

#: ``artifacts.path`` is VARCHAR(512).
MAX_PATH_CHARS = 512

log = logging.getLogger(__name__)


class ArtifactSource(Protocol):
    """Where a run's files come from (:class:`swarm.store.store.StateStore`)."""

    def artifact_index(self, run_id: str) -> list[ArtifactInfo]: ...

    def artifact_contents(self, run_id: str, files: Sequence[ArtifactInfo]) -> Iterator[tuple[str, str, bytes]]: ...


# --------------------------------------------------------------------------- the workspace


@dataclass(frozen=True)
class _Restored:
    sha256: str
    #: inode, size, mtime and ctime as restored: while all four are unchanged, so is the file.
    status: tuple[int, int, int, int]


def _status(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class _MemorySource:
    """path → (sha256, bytes), as tests hand files over (the given sha256 is recomputed)."""

    def __init__(self, files: Mapping[str, tuple[str, bytes]]) -> None:
        self._files = {path: data for path, (_sha, data) in files.items()}

    def artifact_index(self, run_id: str) -> list[ArtifactInfo]:
        now = time.time()
        return [ArtifactInfo(p, hashlib.sha256(d).hexdigest(), len(d), now) for p, d in self._files.items()]

    def artifact_contents(self, run_id: str, files: Sequence[ArtifactInfo]) -> Iterator[tuple[str, str, bytes]]:
        for info in files:
            yield info.path, info.sha256, self._files[info.path]


class _Writer:
    """One restored file being written, piece by piece, and hashed as it goes."""

    def __init__(self, path: str, sha: str, target: Path | None) -> None:
        self.path, self.sha, self.target = path, sha, target
        self.digest = hashlib.sha256()
        self.file: IO[bytes] | None = None
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self.file = open(target, "wb")  # noqa: SIM115 - closed by close()
            except OSError as exc:  # e.g. a file and a directory of the same name
                log.warning("workspace file %r not restored: %s", path, exc)

    def write(self, piece: bytes) -> None:
        self.digest.update(piece)
        if self.file is not None:
            self.file.write(piece)

    def close(self) -> bool:
        """Whether the file was written whole."""
        if self.file is None:
            return False
        self.file.close()
        self.file = None
        if self.digest.hexdigest() != self.sha:
            # Read in several pieces while another call saved a new version: read it again.
            raise StoreConflict(f"workspace file {self.path!r} changed while it was being read")
        return True


class Workspace:
    """A temporary directory holding a run's files for one tool call.

    ``source`` (the store, or for tests a mapping path → (sha256, bytes)) is restored on enter;
    or call :meth:`restore` inside the ``with`` (e.g. under a retry). :meth:`changed` tells what
    the call created or modified, within ``quota``. The directory is removed on exit.
    """

    def __init__(
        self,
        run_id: str,
        source: ArtifactSource | Mapping[str, tuple[str, bytes]] | None = None,
        *,
        quota: Quota | None = None,
        cache: FileCache | None = None,
    ) -> None:
        self.run_id = run_id
        self.quota = quota or Quota()
        self._source = _MemorySource(source) if isinstance(source, Mapping) else source
        self._cache = cache
        #: Every file the run has (path → size, as the index said): what the quota counts.
        self._sizes: dict[str, int] = {}
        #: The files written by the restore (by their path relative to the workspace).
        self._restored: dict[str, _Restored] = {}
        self.path = Path(tempfile.mkdtemp(prefix=f"swarm-{run_id[:12]}-")).resolve()

    def __enter__(self) -> Workspace:
        if self._source is not None:
            try:
                self.restore(self._source)
            except BaseException:
                shutil.rmtree(self.path, ignore_errors=True)
                raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _safe(self, rel: str) -> Path | None:
        target = (self.path / rel).resolve()
        return target if target.is_relative_to(self.path) and target != self.path else None

    def restore(self, source: ArtifactSource) -> None:
        """Write the run's files here: from this machine's cache where it has them, else from the
        database, about a MiB at a time. Safe to repeat (after a database error)."""
        index = source.artifact_index(self.run_id)
        self._sizes = {info.path: info.size for info in index}
        self._restored = {}
        saved_at = {info.path: info.updated_at for info in index}
        missing: list[ArtifactInfo] = []
        for info in index:
            target = self._safe(info.path)
            if target is None:
                log.warning("workspace file %r not restored: its path leaves the workspace", info.path)
            elif self._cache is not None and self._from_cache(info, target):
                self._mark(target, info.sha256, info.updated_at)
            else:
                missing.append(info)
        writer: _Writer | None = None
        try:
            for path, sha, piece in source.artifact_contents(self.run_id, missing):
                if writer is None or writer.path != path:
                    if writer is not None:
                        self._finish(writer, saved_at)
                    writer = _Writer(path, sha, self._safe(path))
                writer.write(piece)
            if writer is not None:
                self._finish(writer, saved_at)
                writer = None
        finally:
            if writer is not None and writer.file is not None:
                writer.file.close()
        if self._cache is not None:
            self._cache.trim()

    def _from_cache(self, info: ArtifactInfo, target: Path) -> bool:
        assert self._cache is not None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return self._cache.copy_out(info.sha256, target)
        except (OSError, ValueError):
            return False

    def _finish(self, writer: _Writer, saved_at: Mapping[str, float]) -> None:
        if writer.close() and writer.target is not None:
            self._mark(writer.target, writer.sha, saved_at.get(writer.path, time.time()))
            if self._cache is not None:
                self._cache.add(writer.target, writer.sha)

    def _mark(self, target: Path, sha: str, saved_at: float) -> None:
        """Remember a restored file as it is now. Its mtime becomes the time it was saved: any later
        write changes mtime and ctime (and ctime cannot be set back), so an unchanged status means
        unchanged content without reading it."""
        ns = int(saved_at * 1e9)
        os.utime(target, ns=(ns, ns))
        rel = target.relative_to(self.path).as_posix()
        self._restored[rel] = _Restored(sha, _status(os.lstat(target)))

    def changed(self) -> Changes:
        """Files created or modified since the restore, each read once in chunks to hash it (never
        whole into memory), and those the run's quota has no room for (they are not read)."""
        changes = Changes(self.quota)
        tally = Tally(self.quota, self._sizes)
        for entry in self._files(changes):
            rel = os.path.relpath(entry.path, self.path).replace(os.sep, "/")
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            restored = self._restored.get(rel)
            if restored is not None and restored.status == _status(st):
                continue  # untouched since the restore
            name = sanitize.text(rel)
            if len(rel) > MAX_PATH_CHARS or name != rel:
                # artifacts.path is VARCHAR(512), and a name that is not UTF-8 cannot be stored at all.
                changes.refuse(
                    name, st.st_size, f"its path cannot be stored (not UTF-8, or over {MAX_PATH_CHARS} characters)"
                )
                continue
            if st.st_size != tally.sizes.get(rel) and (reason := tally.refusal(rel, st.st_size)):
                changes.refuse(rel, st.st_size, reason)  # not even read
                continue
            try:
                sha, size = _hash_file(entry.path)
            except OSError:
                continue  # gone, or made unreadable: there is nothing to save
            if restored is not None and sha == restored.sha256:
                continue  # rewritten with the same content (e.g. copied back by a sandbox)
            if reason := tally.refusal(rel, size):
                changes.refuse(rel, size, reason)
                continue
            tally.add(rel, size)
            changes.files[rel] = FileChange(rel, Path(entry.path), sha, size)
            if self._cache is not None:
                self._cache.add(Path(entry.path), sha)
        if self._cache is not None:
            self._cache.trim()
        return changes

    def _files(self, changes: Changes) -> Iterator[os.DirEntry[str]]:
        """The regular files under the workspace (symlinks and special files are never followed or
        saved), listed lazily: a call that made a million files costs no memory for the listing."""
        stack = [os.scandir(self.path)]
        try:
            while stack:
                entry = next(stack[-1], None)
                if entry is None:
                    stack.pop().close()
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        stack.append(os.scandir(entry.path))
                    except OSError as exc:
                        rel = sanitize.text(os.path.relpath(entry.path, self.path))
                        changes.refuse(rel + "/", 0, f"the directory could not be read ({exc.strerror})")
                elif entry.is_file(follow_symlinks=False):
                    yield entry
        finally:
            for it in stack:
                it.close()


def _hash_file(path: str) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks; a symlink is refused (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        size = 0
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
