"""The store's connection to its database: transactions, the error table, conflict retries.

Every part of the store (runs, leases, turn commits, subagents, read models) takes one
:class:`Session` and opens its connections through it, so database errors reach callers as
swarm's errors (:data:`DBAPI_ERRORS`) whichever part raised them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from swarm.exceptions import StoreConflict, StoreDataError, StoreUnavailable, SwarmError
from swarm.retry import RetryPolicy
from swarm.store.db import WriteGate

T = TypeVar("T")

#: A transaction that lost a deadlock or a serialisation race (:class:`StoreConflict`) is simply
#: run again, a few times, after a short wait (0.05 s, 0.1 s, then 0.2 s).
CONFLICT_RETRY = RetryPolicy(attempts=5, base=0.05, cap=0.2)

#: SQLSTATEs after which the same transaction may simply be tried again (deadlock detected,
#: serialisation failure).
CONFLICT_STATES = frozenset({"40P01", "40001"})

#: Words in a driver's message that mean the connection, not the statement, failed.
CONNECTIVITY_WORDS = (
    "connection",
    "server closed",
    "terminating",
    "could not connect",
    "the database system is",
    "ssl syscall",
)


def new_id() -> str:
    return uuid.uuid4().hex


def owner_id() -> str:
    """Who holds a lease: host and pid let a same-host supervisor see that the holder is dead."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Session:
    """Connections to one database, each in the right mode for what it is used for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gate = WriteGate(engine)
        # Single statements need no transaction around them: on PostgreSQL (READ COMMITTED, one
        # snapshot per statement anyway) autocommit saves the BEGIN and COMMIT/ROLLBACK round
        # trips of every claim and read. SQLite keeps transactions so writes stay behind the gate.
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One write transaction; database errors become swarm's (:func:`translated`)."""
        with self.gate, translated(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with translated(), (self.auto or self.engine).connect() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Several reads that must agree with each other (a running run changes between them):
        one snapshot for all, REPEATABLE READ on PostgreSQL (a transaction on SQLite)."""
        pg = self.dialect == "postgresql"
        engine = self.engine.execution_options(isolation_level="REPEATABLE READ") if pg else self.engine
        with translated(), engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def single(self) -> Iterator[Connection]:
        """For one atomic write statement: autocommit where available, else a transaction."""
        if self.auto is None:
            with self.tx() as conn:
                yield conn
        else:
            with translated(), self.auto.connect() as conn:
                yield conn

    def retrying_conflicts(self, fn: Callable[[], T]) -> T:
        """``fn()`` (a whole transaction), run again when it loses a deadlock (:data:`CONFLICT_RETRY`)."""
        return CONFLICT_RETRY.call(fn, (StoreConflict,))


def _first_line(exc: BaseException | None) -> str:
    """An error's first line, short: enough to say what was refused without echoing the data."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= 300 else line[:300] + "…"


def _is_connectivity(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or any(s in str(exc.orig).lower() for s in CONNECTIVITY_WORDS)


#: How a driver error reaches swarm, first match wins: connectivity → StoreUnavailable (retry
#: later); serialisation failures and deadlocks → StoreConflict (retry the transaction); refused
#: data (a value too long, out of range or unstorable, a constraint violated) → StoreDataError,
#: which retrying cannot cure. Anything else propagates as it was.
DBAPI_ERRORS: tuple[tuple[Callable[[DBAPIError], bool], Callable[[DBAPIError], SwarmError]], ...] = (
    (_is_connectivity, lambda e: StoreUnavailable(f"database unavailable: {e.orig!r}")),
    (
        lambda e: getattr(e.orig, "sqlstate", None) in CONFLICT_STATES,
        lambda e: StoreConflict(f"transaction conflict, retry: {e.orig!r}"),
    ),
    (
        lambda e: isinstance(e, DataError | IntegrityError),
        lambda e: StoreDataError(f"the database refused the data: {_first_line(e.orig)}"),
    ),
)


@contextmanager
def translated() -> Iterator[None]:
    """Database errors as swarm sees them (:data:`DBAPI_ERRORS`)."""
    try:
        yield
    except PoolTimeout as exc:  # every pooled connection busy for pool_timeout (30 s)
        raise StoreUnavailable(f"no free database connection: {exc}") from exc
    except DBAPIError as exc:
        for matches, error in DBAPI_ERRORS:
            if matches(exc):
                raise error(exc) from exc
        raise
    except (OverflowError, UnicodeEncodeError) as exc:  # the driver refused a value before sending it
        raise StoreDataError(f"the database refused the data: {type(exc).__name__}: {_first_line(exc)}") from exc
