"""A run's workspace files in the database: saved within the run's quota, and read back a piece at
a time so a restore's memory does not grow with the files."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, LargeBinary, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from swarm.domain.workspace import Changes, Refused, Tally
from swarm.exceptions import NotFound, StoreConflict
from swarm.store import writes
from swarm.store.session import Session
from swarm.store.tables import ARTIFACTS
from swarm.store.types import ArtifactInfo

#: A restore reads a run's files at most this many bytes at a time (several small files in one
#: query, a larger file in pieces of this size): its memory does not grow with the files. (A
#: piece costs several times its size on the way: the driver's buffer holds bytea as hex text.)
READ_BYTES = 1024 * 1024


def put(conn: Connection, dialect: str, run_id: str, path: str, data: bytes, step_id: str | None = None) -> None:
    """Save one file; ``step_id``: the tool step that wrote it (None: an attachment)."""
    sha = hashlib.sha256(data).hexdigest()
    values = {"data": data, "sha256": sha, "size": len(data), "updated_at": time.time(), "step_id": step_id}
    # An upsert: two parallel tool steps creating the same new file must not collide on
    # the unique (run_id, path) key (an IntegrityError, which fails a step).
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    conn.execute(
        upsert(ARTIFACTS)
        .values(run_id=run_id, path=path, **values)
        .on_conflict_do_update(index_elements=[ARTIFACTS.c.run_id, ARTIFACTS.c.path], set_=values)
    )


def save(conn: Connection, dialect: str, run_id: str, changes: Changes, step_id: str | None = None) -> list[Refused]:
    """Save the changed files that fit the run's quota, reading one at a time; return those
    that did not fit. The quota is checked against the run's files as committed: writers of
    one run's files take turns (a transaction-scoped advisory lock on PostgreSQL; SQLite has a
    single writer), so parallel tool calls cannot exceed it together."""
    writes.take_turns(conn, dialect, f"artifacts:{run_id}")
    sizes = conn.execute(select(ARTIFACTS.c.path, ARTIFACTS.c.size).where(ARTIFACTS.c.run_id == run_id)).all()
    tally = Tally(changes.quota, {r.path: r.size for r in sizes})
    refused: list[Refused] = []
    for change in changes.files.values():
        try:
            data = change.read(changes.quota.max_file_bytes)
        except OSError as exc:
            refused.append(Refused(change.path, change.size, f"it could not be read ({exc.strerror or exc})"))
            continue
        if reason := tally.refusal(change.path, len(data)):
            refused.append(Refused(change.path, len(data), reason))
            continue
        put(conn, dialect, run_id, change.path, data, step_id)
        tally.add(change.path, len(data))
        del data
    return refused


class Reads:
    """Reading a run's files, each query on a short connection of its own (``session.read``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def index(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        """A run's workspace files (or only the one at ``path``), without their bytes."""
        query = select(
            ARTIFACTS.c.path, ARTIFACTS.c.sha256, ARTIFACTS.c.size, ARTIFACTS.c.updated_at, ARTIFACTS.c.step_id
        ).where(ARTIFACTS.c.run_id == run_id)
        if path is not None:
            query = query.where(ARTIFACTS.c.path == path)
        with self.session.read() as conn:
            rows = conn.execute(query.order_by(ARTIFACTS.c.path)).all()
        return [ArtifactInfo(r.path, r.sha256, r.size, r.updated_at, r.step_id) for r in rows]

    def read(self, run_id: str, path: str) -> tuple[ArtifactInfo, bytes]:
        """One file whole (NotFound if the run has none at ``path``), read about a MiB at a time;
        a read that met a new version being saved is read again."""
        for _ in range(5):
            found = self.index(run_id, path)
            if not found:
                raise NotFound(f"run {run_id} has no file {path!r} (`swarm files {run_id}` lists its files)")
            info = found[0]
            data = b"".join(piece for _p, _sha, piece in self.contents(run_id, [info]))
            if hashlib.sha256(data).hexdigest() == info.sha256:
                return info, data
        raise StoreConflict(f"file {path!r} of run {run_id} kept changing while it was read")

    def contents(
        self, run_id: str, files: Sequence[ArtifactInfo], *, read_bytes: int = READ_BYTES
    ) -> Iterator[tuple[str, str, bytes]]:
        """``(path, sha256, piece)`` for each of ``files``, reading at most about ``read_bytes`` at a
        time: small files several per query, a larger one in consecutive pieces (its own queries).
        A file's pieces concatenate to its bytes; one read while a new version was being saved
        has a different sha256 (the reader should try again). Files since removed are skipped."""
        batch: list[str] = []
        batch_bytes = 0
        for info in files:
            if info.size > read_bytes:
                yield from self._pieces(run_id, info.path, read_bytes)
                continue
            if batch and (batch_bytes + info.size > read_bytes or len(batch) >= 500):
                yield from self._batch(run_id, batch)
                batch, batch_bytes = [], 0
            batch.append(info.path)
            batch_bytes += info.size
        if batch:
            yield from self._batch(run_id, batch)

    def _batch(self, run_id: str, paths: list[str]) -> Iterator[tuple[str, str, bytes]]:
        with self.session.read() as conn:
            rows = list(
                conn.execute(
                    select(ARTIFACTS.c.path, ARTIFACTS.c.sha256, ARTIFACTS.c.data).where(
                        ARTIFACTS.c.run_id == run_id, ARTIFACTS.c.path.in_(paths)
                    )
                )
            )
        while rows:  # each row let go once written
            r = rows.pop()
            yield r.path, r.sha256, bytes(r.data)

    def _pieces(self, run_id: str, path: str, read_bytes: int) -> Iterator[tuple[str, str, bytes]]:
        offset = 0
        while True:
            # substr counts from 1, in bytes for bytea (PostgreSQL) and BLOB (SQLite).
            piece = func.substr(ARTIFACTS.c.data, offset + 1, read_bytes, type_=LargeBinary)
            with self.session.read() as conn:
                row = conn.execute(
                    select(ARTIFACTS.c.sha256, ARTIFACTS.c.size, piece.label("piece")).where(
                        ARTIFACTS.c.run_id == run_id, ARTIFACTS.c.path == path
                    )
                ).first()
            if row is None:
                return
            data = bytes(row.piece or b"")
            if offset == 0 or data:
                yield path, row.sha256, data
            offset += len(data)
            if not data or offset >= row.size:
                return

    def all(self, run_id: str) -> dict[str, tuple[str, bytes]]:
        """path → (sha256, bytes) of a run's workspace files, all in memory: for inspection and
        tests. Tool calls restore files with :meth:`contents`, about a MiB at a time."""
        with self.session.read() as conn:
            rows = conn.execute(
                select(ARTIFACTS.c.path, ARTIFACTS.c.sha256, ARTIFACTS.c.data).where(ARTIFACTS.c.run_id == run_id)
            ).all()
        return {r.path: (r.sha256, bytes(r.data)) for r in rows}
