"""Deleting runs: one on request, or every run older than an age (``swarm prune``).

A run's rows go in small batches, each its own short transaction, children before the run row
(whose ``ON DELETE CASCADE`` then finds nothing left): deleting a run of a million rows never
holds a lock long enough to stall the runs still going. Only a run that has ended is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, delete, func, literal, select

from swarm.domain.status import RUN_TERMINAL, RunStatus
from swarm.exceptions import StateError
from swarm.store import step_stats
from swarm.store.session import Session
from swarm.store.tables import AGENTS, ARTIFACTS, DEFS, EVENTS, MESSAGES, RUNS, STEPS
from swarm.store.views import LiveViews

#: Rows one transaction deletes. Small enough that a batch holds its locks for milliseconds.
BATCH_ROWS = 2000

#: A run's tables, children first; the run row goes last.
_CHILDREN: tuple[Table, ...] = (EVENTS, MESSAGES, STEPS, ARTIFACTS, AGENTS, DEFS)


@dataclass
class Deleted:
    """What a deletion freed (or, dry, would free): runs, rows per table, file bytes, and the bytes
    of the rows' data (PostgreSQL: each row as stored, ``pg_column_size``; SQLite: the length of
    its values, an estimate)."""

    runs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0
    data_bytes: int = 0

    def add(self, other: Deleted) -> None:
        self.runs += other.runs
        for table, n in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n
        self.file_bytes += other.file_bytes
        self.data_bytes += other.data_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "rows": self.rows,
            "total_rows": sum(self.rows.values()),
            "file_bytes": self.file_bytes,
            "data_bytes": self.data_bytes,
        }


class Retention:
    def __init__(self, session: Session, live: LiveViews) -> None:
        self.session = session
        self.live = live  # its run_status: the existence, tenancy and status check

    def delete_run(self, run_id: str, tenant: str | None = None) -> Deleted:
        """Delete an ended run with all its rows and files. NotFound for an unknown run (or one of
        another tenant), StateError for a running one: cancel it first."""
        status = self.live.run_status(run_id, tenant)
        if status not in RUN_TERMINAL:
            raise StateError(f"run {run_id} is {status}: cancel it (`swarm cancel {run_id}`) before deleting it")
        return self._delete(run_id)

    def prune(
        self,
        older_than: float,
        statuses: Iterable[RunStatus],
        *,
        dry_run: bool = False,
        now: float | None = None,
        limit: int | None = None,
    ) -> Deleted:
        """Delete every run with one of ``statuses`` (ended ones only) that finished more than
        ``older_than`` seconds ago; the oldest ``limit`` of them only, if given."""
        ended = [s for s in statuses if s in RUN_TERMINAL]
        cutoff = (time.time() if now is None else now) - older_than
        with self.session.read() as conn:
            ids = list(
                conn.execute(
                    select(RUNS.c.id)
                    .where(RUNS.c.status.in_(ended), func.coalesce(RUNS.c.finished_at, RUNS.c.created_at) < cutoff)
                    .order_by(RUNS.c.created_at)
                    .limit(limit)
                ).scalars()
            )
        if dry_run:
            return self._measure(ids)
        freed = Deleted()
        for run_id in ids:
            freed.add(self._delete(run_id))
        return freed

    def _measure(self, run_ids: Sequence[str]) -> Deleted:
        out = Deleted(runs=list(run_ids))
        if not run_ids:
            return out
        with self.session.read() as conn:
            for table in (*_CHILDREN, RUNS):
                key = table.c.id if table is RUNS else table.c.run_id
                out.rows[table.name] = conn.execute(select(func.count()).where(key.in_(run_ids))).scalar() or 0
            files = select(func.coalesce(func.sum(ARTIFACTS.c.size), 0)).where(ARTIFACTS.c.run_id.in_(run_ids))
            out.file_bytes = int(conn.execute(files).scalar() or 0)
            out.data_bytes = sum(self._bytes(conn, table, run_ids) for table in (*_CHILDREN, RUNS))
        return out

    def _bytes(self, conn: Connection, table: Table, run_ids: Sequence[str]) -> int:
        """The bytes of the runs' rows of ``table``, as stored (PostgreSQL) or estimated (SQLite)."""
        key = table.c.id if table is RUNS else table.c.run_id
        if self.session.dialect == "postgresql":
            size: Any = func.pg_column_size(table.table_valued())
        else:
            size = sum((func.coalesce(func.length(c), 0) for c in table.columns), literal(0))
        return int(conn.execute(select(func.coalesce(func.sum(size), 0)).where(key.in_(run_ids))).scalar() or 0)

    def _delete(self, run_id: str) -> Deleted:
        out = Deleted(runs=[run_id])
        with self.session.read() as conn:
            files = select(func.coalesce(func.sum(ARTIFACTS.c.size), 0)).where(ARTIFACTS.c.run_id == run_id)
            out.file_bytes = int(conn.execute(files).scalar() or 0)
            out.data_bytes = sum(self._bytes(conn, table, [run_id]) for table in (*_CHILDREN, RUNS))
        with self.session.tx() as conn:
            status = conn.execute(select(RUNS.c.status).where(RUNS.c.id == run_id)).scalar()
            if status is not None and status != RunStatus.RUNNING:
                step_stats.count_run(conn, run_id, -1)  # /metrics' totals forget its steps
        for table in _CHILDREN:
            out.rows[table.name] = self._delete_in_batches(table, run_id)
        with self.session.tx() as conn:
            out.rows[RUNS.name] = conn.execute(delete(RUNS).where(RUNS.c.id == run_id)).rowcount
        return out

    def _delete_in_batches(self, table: Table, run_id: str) -> int:
        total = 0
        batch = select(table.c.id).where(table.c.run_id == run_id).limit(BATCH_ROWS).scalar_subquery()
        while True:
            with self.session.tx() as conn:
                n = conn.execute(delete(table).where(table.c.id.in_(batch))).rowcount
            total += n
            if n < BATCH_ROWS:
                return total
