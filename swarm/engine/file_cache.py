"""This machine's copies of run files by content, shared by its worker processes, so a tool call
copies a file restored or saved before from disk instead of reading it from the database again."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

#: Files are hashed and copied in pieces of this size.
CHUNK_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A temporary file of the cache older than this was left by a process that died while writing it.
_STALE_TMP_SECONDS = 3600.0


class FileCache:
    """This machine's copies of run files by content (``<root>/<sha[:2]>/<sha256>``), shared by its
    worker processes: a file restored or saved here before is copied from disk instead of being
    read from the database again. An entry is verified as it is copied out, so a damaged one is a
    miss, never wrong content. Entries appear by atomic rename; the least recently used are
    dropped once the cache is past ``max_bytes`` (checked after this process added to it)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._added = 0
        self._lock = threading.Lock()

    def _entry(self, sha: str) -> Path:
        if not _SHA256.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        return self.root / sha[:2] / sha

    def copy_out(self, sha: str, target: Path) -> bool:
        """Write the file with content ``sha`` to ``target``; False if the cache has no good copy."""
        entry = self._entry(sha)
        try:
            src = open(entry, "rb")  # noqa: SIM115 - closed below, with the target
        except OSError:
            return False
        digest = hashlib.sha256()
        with src, open(target, "wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != sha:
            log.warning("cached file %s is damaged; dropping it", sha)
            with contextlib.suppress(OSError):
                entry.unlink()
            return False
        with contextlib.suppress(OSError):
            os.utime(entry)  # recently used
        return True

    def add(self, source: Path, sha: str) -> None:
        """Keep a copy of ``source``, whose content hashes to ``sha``. Best effort: a full disk or a
        race with another process only means no copy."""
        entry = self._entry(sha)
        if entry.exists():
            with contextlib.suppress(OSError):
                os.utime(entry)
            return
        tmp: str | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
            os.close(fd)
            shutil.copyfile(source, tmp)  # a kernel-side copy: no Python buffers
            size = os.stat(tmp).st_size
            os.replace(tmp, entry)
            tmp = None
        except OSError as exc:
            log.warning("could not cache a workspace file: %s", exc)
            return
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        with self._lock:
            self._added += size

    def trim(self) -> None:
        """Drop the least recently used entries until the cache is back under 90% of ``max_bytes``."""
        with self._lock:
            if not self._added:
                return
            self._added = 0
        entries: list[tuple[float, int, str]] = []
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(self.root) as subdirs:
            for sub in subdirs:
                if not sub.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError), os.scandir(sub.path) as files:
                    for e in files:
                        with contextlib.suppress(OSError):
                            st = e.stat(follow_symlinks=False)
                            if e.name.startswith(".tmp-") and now - st.st_mtime < _STALE_TMP_SECONDS:
                                continue  # another process is writing it
                            entries.append((st.st_mtime, st.st_size, e.path))
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(entries):
            if total <= self.max_bytes * 0.9:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
