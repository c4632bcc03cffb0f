"""What one run may keep of the files its tool calls write (:class:`Quota`), the bookkeeping that
decides whether a file fits (:class:`Tally`), and the note that tells the model which files were
not kept and why: pure records and decisions, used where files are changed (the engine's
workspace) and where they are saved (the store)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm import constants as c
from swarm.config import Settings

#: The default quotas (the settings' defaults).
MAX_FILE_BYTES = c.WORKSPACE_MAX_FILE_BYTES
MAX_FILES = c.WORKSPACE_MAX_FILES
#: How many refused files a note names one by one (the rest are counted).
NOTE_NAMES = 20


@dataclass(frozen=True)
class Quota:
    """What one run may keep of the files its tool calls write."""

    max_bytes: int = c.WORKSPACE_MAX_BYTES
    max_files: int = c.WORKSPACE_MAX_FILES
    max_file_bytes: int = c.WORKSPACE_MAX_FILE_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> Quota:
        return cls(settings.workspace_max_bytes, settings.workspace_max_files, settings.workspace_max_file_bytes)


class Tally:
    """A run's files (path → size) and whether a new version of one of them fits the quota."""

    def __init__(self, quota: Quota, sizes: Mapping[str, int]) -> None:
        self.quota = quota
        self.sizes = dict(sizes)
        self.total = sum(self.sizes.values())

    def refusal(self, path: str, size: int) -> str | None:
        """Why ``size`` bytes at ``path`` cannot be kept, or None. What does not make the run's
        files more or larger is kept even past a quota (one lowered since they were saved)."""
        q = self.quota
        if size > q.max_file_bytes:
            return f"larger than the limit of {human_bytes(q.max_file_bytes)} per file"
        old = self.sizes.get(path)
        if old is None and len(self.sizes) >= q.max_files:
            return f"the run already keeps the most files it may ({q.max_files})"
        grow = size - (old or 0)
        if grow > 0 and self.total + grow > q.max_bytes:
            return (
                f"the run's files would exceed {human_bytes(q.max_bytes)} in total "
                f"({human_bytes(self.total)} already kept)"
            )
        return None

    def add(self, path: str, size: int) -> None:
        self.total += size - self.sizes.get(path, 0)
        self.sizes[path] = size


@dataclass(frozen=True)
class FileChange:
    """A file the call created or modified, read from disk only when it is saved."""

    path: str
    source: Path
    sha256: str
    size: int

    def read(self, limit: int) -> bytes:
        """The file as it is now: at most ``limit + 1`` bytes (more than ``limit``: it grew too large)."""
        fd = os.open(self.source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit + 1)


@dataclass(frozen=True)
class Refused:
    """A file that was not saved, and why."""

    path: str
    size: int
    reason: str


@dataclass
class Changes:
    """What a tool call changed in its workspace: the files to save, and those refused already."""

    quota: Quota
    files: dict[str, FileChange] = field(default_factory=dict)
    #: The first NOTE_NAMES refused files; ``unlisted`` counts the others.
    refused: list[Refused] = field(default_factory=list)
    unlisted: int = 0

    def refuse(self, path: str, size: int, reason: str) -> None:
        if len(self.refused) < NOTE_NAMES:
            self.refused.append(Refused(path, size, reason))
        else:
            self.unlisted += 1

    def note_on(self, content: str, more: Sequence[Refused] = ()) -> str:
        """``content`` (a tool result) with a note naming every file that was not saved: those
        refused here and ``more`` (refused when committing)."""
        refused = [*self.refused, *more]
        if not refused:
            return content
        note = refusal_note(refused, self.unlisted, self.quota)
        return f"{content.rstrip()}\n\n{note}" if content.strip() else note


def refusal_note(refused: Sequence[Refused], unlisted: int, quota: Quota) -> str:
    n = len(refused) + unlisted
    files = "1 file" if n == 1 else f"{n} files"
    lines = [
        f"[workspace: {files} written by this call {'was' if n == 1 else 'were'} NOT saved and will be "
        f"missing from later calls. A run keeps at most {quota.max_files} files, "
        f"{human_bytes(quota.max_bytes)} in total and {human_bytes(quota.max_file_bytes)} per file; "
        "write fewer or smaller files (e.g. compress them, or keep only results).]"
    ]
    for r in refused[:NOTE_NAMES]:
        shown = r.path if len(r.path) <= 200 else r.path[:200] + "…"
        lines.append(f"- {shown} ({human_bytes(r.size)}): {r.reason}")
    rest = n - min(len(refused), NOTE_NAMES)
    if rest:
        lines.append(f"- and {rest} more")
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"
