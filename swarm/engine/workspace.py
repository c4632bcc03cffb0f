"""A run's files on a worker's local disk, for the duration of one tool call.

The database holds the truth (:class:`swarm.store.models.Artifact`), so a step may run on any
machine: the files are restored before the call and what the tool changed is saved with its result.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

#: Files larger than this are not saved back (the model is told via the tool's own output).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_FILES = 1000


class Workspace:
    def __init__(self, run_id: str, files: dict[str, tuple[str, bytes]]) -> None:
        self._files = files
        self.path = Path(tempfile.mkdtemp(prefix=f"swarm-{run_id[:12]}-"))

    def __enter__(self) -> Workspace:
        for rel, (_sha, data) in self._files.items():
            target = self._safe(rel)
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _safe(self, rel: str) -> Path | None:
        target = (self.path / rel).resolve()
        return target if target.is_relative_to(self.path.resolve()) else None

    def changed(self) -> dict[str, bytes]:
        """Files created or modified since the workspace was restored."""
        out: dict[str, bytes] = {}
        root = self.path.resolve()
        for p in sorted(root.rglob("*")):
            if len(out) >= MAX_FILES:
                break
            if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_FILE_BYTES:
                continue
            rel = p.relative_to(root).as_posix()
            data = p.read_bytes()
            old = self._files.get(rel)
            if old is None or old[0] != hashlib.sha256(data).hexdigest():
                out[rel] = data
        return out
