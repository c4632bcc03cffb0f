"""The deployment as a whole: its identity, and the leases of cluster-wide roles (the sweeper).

* **Identity.** One row, written by the first process that asks (``INSERT ... ON CONFLICT DO
  NOTHING``, then read back: two processes asking at once get the same id). Every step message
  carries it; a worker whose database holds another id refuses the message.
* **Role leases.** A role (``sweeper``) is held by whoever renewed its row last, until
  ``expires_at`` on the database's clock. One conditional UPDATE both renews (holder = me) and
  takes over (the lease expired); concurrent candidates are serialised by the row's lock, so at
  most one of them gets the row. A holder that dies stops renewing and loses the role when its
  lease expires; one that stops cleanly releases it at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from swarm.exceptions import StoreUnavailable
from swarm.store.db import db_now
from swarm.store.session import Session
from swarm.store.tables import CLUSTER_IDENTITY, CLUSTER_LEASES


@dataclass(frozen=True)
class RoleHolder:
    """Who holds a cluster-wide role, and for how much longer (seconds; negative: it lapsed)."""

    role: str
    holder: str | None
    expires_in: float
    held_for: float


class ClusterState:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._identity: str | None = None

    def identity(self) -> str:
        """This database's cluster id, created on first use; cached (it never changes)."""
        if self._identity is None:
            self._identity = self._read_identity() or self._create_identity()
        return self._identity

    def _read_identity(self) -> str | None:
        with self.session.read() as conn:
            value = conn.execute(select(CLUSTER_IDENTITY.c.cluster_id)).scalar()
        return str(value) if value is not None else None

    def _create_identity(self) -> str:
        insert = postgresql.insert if self.session.dialect == "postgresql" else sqlite.insert
        stmt = insert(CLUSTER_IDENTITY).values(singleton=1, cluster_id=uuid.uuid4().hex, created_at=time.time())
        with self.session.tx() as conn:
            conn.execute(stmt.on_conflict_do_nothing())
        created = self._read_identity()  # ours, or the one a racing process wrote first
        if created is None:
            raise StoreUnavailable("the cluster id was written but cannot be read back")
        return created

    def hold(self, role: str, holder: str, ttl: float) -> bool:
        """Renew ``role`` for ``holder``, or take it over if its lease lapsed; True if ``holder``
        now holds it for ``ttl`` seconds."""
        lease = CLUSTER_LEASES.c
        stmt = (
            update(CLUSTER_LEASES)
            .where(lease.name == role, or_(lease.holder == holder, lease.holder.is_(None), lease.expires_at < db_now()))
            .values(
                holder=holder,
                expires_at=db_now() + ttl,
                acquired_at=case((lease.holder == holder, lease.acquired_at), else_=db_now()),
            )
        )
        with self.session.single() as conn:
            if conn.execute(stmt).rowcount:
                return True
        # No row at all (a role the migration did not create): add it free, then try once more.
        insert = postgresql.insert if self.session.dialect == "postgresql" else sqlite.insert
        with self.session.tx() as conn:
            conn.execute(insert(CLUSTER_LEASES).values(name=role, expires_at=0.0).on_conflict_do_nothing())
        with self.session.single() as conn:
            return bool(conn.execute(stmt).rowcount)

    def release(self, role: str, holder: str) -> bool:
        """Give ``role`` up now (a clean stop), so another candidate takes it on its next try."""
        with self.session.single() as conn:
            res = conn.execute(
                update(CLUSTER_LEASES)
                .where(CLUSTER_LEASES.c.name == role, CLUSTER_LEASES.c.holder == holder)
                .values(holder=None, acquired_at=None, expires_at=0.0)
            )
            return bool(res.rowcount)

    def holder(self, role: str) -> RoleHolder:
        """Who holds ``role`` now (holder None: nobody ever did, or it was released)."""
        lease = CLUSTER_LEASES.c
        with self.session.read() as conn:
            row = conn.execute(
                select(lease.holder, lease.expires_at - db_now(), db_now() - lease.acquired_at).where(
                    lease.name == role
                )
            ).first()
        if row is None:
            return RoleHolder(role, None, 0.0, 0.0)
        return RoleHolder(role, row[0], float(row[1]), float(row[2] or 0.0))
