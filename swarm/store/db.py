"""Engines, the database clock, and the per-dialect details SQLAlchemy does not hide."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Float, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.functions import FunctionElement

from swarm.exceptions import ConfigError

log = logging.getLogger(__name__)


class db_now(FunctionElement[float]):
    """The database server's clock as Unix epoch seconds. Leases are compared against this one
    clock, so workers on machines whose clocks disagree still agree on who holds a step."""

    type = Float()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _pg_now(element: db_now, compiler: Any, **kw: Any) -> str:
    return "extract(epoch from clock_timestamp())::float8"


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (live views) run while a step commits; NORMAL sync is durable across
    # process crashes (the embedded mode's threat model), fsyncing at checkpoints only.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


#: A pooled connection idle for longer than this is pinged before use. A busy worker's connections
#: are never idle that long, so the hot path pays no ping round trip; if one of them died anyway
#: (server restart, connection killed) its statement fails, the pool drops every connection it
#: had, and the caller's retry gets a fresh one.
PING_IDLE_SECONDS = 5.0


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["swarm_idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    idle_since = record.info.get("swarm_idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
        return
    try:
        dbapi_conn.execute("SELECT 1")
        if not dbapi_conn.autocommit:
            dbapi_conn.rollback()
    except Exception as exc:
        raise DisconnectionError(f"stale pooled connection: {exc!r}") from exc  # the pool retries


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None, echo: bool = False) -> Engine:
    """An engine for *url*, configured for swarm's access pattern (many short transactions).

    ``max_overflow`` (default: twice ``pool_size``) connections beyond the pool are opened under
    load and closed again as soon as they are returned; 0 makes callers wait for a pooled one.
    """
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not path.startswith("file:"):
            private_file(Path(path))
        eng = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size * 4,
        )
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    if url.startswith("postgresql"):
        overflow = pool_size * 2 if max_overflow is None else max_overflow
        eng = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=overflow, pool_recycle=1800)
        event.listen(eng, "checkin", _note_checkin)
        event.listen(eng, "checkout", _ping_if_idle)
        return eng
    if not url:
        raise ConfigError("SWARM_DATABASE_URL is empty")
    return create_engine(url, echo=echo, poolclass=NullPool)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter (0700): SWARM_HOME holds the database and
    the run files. Created so when missing; an existing one of ours that others may enter is
    tightened (with a warning), unless it is a shared directory (sticky, like /tmp)."""
    path = path.expanduser()
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # whatever the umask
        return path
    except FileExistsError:
        pass
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode) and mode & 0o077 and st.st_uid == os.getuid():
        if st.st_mode & stat.S_ISVTX:
            log.warning("%s is a shared directory (mode %o): it is not made private", path, mode)
        else:
            os.chmod(path, 0o700)
            log.warning("%s was open to other users (mode %o); it is now 0700", path, mode)
    return path


def private_file(db: Path) -> None:
    """An SQLite database file readable by its owner only (0600): created so before SQLite opens
    it (SQLite gives its -wal and -shm files the database file's mode), or tightened if it exists
    (with the -wal, -shm and -journal files beside it). A missing directory is created 0700."""
    if not db.parent.exists():
        private_dir(db.parent)
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o600)
            log.warning("%s was readable by other users (mode %o); it is now 0600", path, mode)


class WriteGate:
    """Serialises write transactions within a process on SQLite (one writer at a time anyway):
    waiting on a lock is far cheaper than SQLite's sleep-and-retry busy handler. A no-op elsewhere."""

    def __init__(self, engine: Engine) -> None:
        self._lock: threading.Lock | None = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._pid = os.getpid()

    def __enter__(self) -> None:
        if self._lock is not None:
            if self._pid != os.getpid():  # forked: the parent's lock state means nothing here
                self._lock = threading.Lock()
                self._pid = os.getpid()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
