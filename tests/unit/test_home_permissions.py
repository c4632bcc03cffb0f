"""SWARM_HOME and the embedded SQLite database are private to their owner: 0700 and 0600."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from swarm.config import Settings
from swarm.runtime import open_store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings(home: Path) -> Settings:
    return Settings(_env_file=None, home=home, database_url="")  # type: ignore[call-arg]


def test_a_new_swarm_home_is_0700_and_its_database_and_wal_files_0600(tmp_path):
    home = tmp_path / "new" / "home"
    old = os.umask(0o022)
    try:
        store = open_store(_settings(home))
        store.create_key("t", None)  # a write: SQLite makes its -wal and -shm files (gone once all close)
        assert _mode(home) == 0o700
        assert _mode(home / "swarm.db") == 0o600
        assert _mode(home / "swarm.db-wal") == _mode(home / "swarm.db-shm") == 0o600
        store.engine.dispose()
    finally:
        os.umask(old)


def test_an_existing_open_home_and_database_are_made_private_on_start(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    db = home / "swarm.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o644)
    (home / "swarm.db-wal").write_bytes(b"")
    os.chmod(home / "swarm.db-wal", 0o666)
    store = open_store(_settings(home))
    try:
        assert _mode(home) == 0o700
        assert _mode(db) == 0o600
        assert _mode(home / "swarm.db-wal") == 0o600  # (SQLite removes it when the last connection closes)
    finally:
        store.engine.dispose()


def test_a_shared_sticky_directory_is_never_locked_down(tmp_path):
    """SWARM_HOME=/tmp by mistake must not make /tmp private to one user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    open_store(_settings(shared)).engine.dispose()
    assert _mode(shared) == 0o1777
    assert _mode(shared / "swarm.db") == 0o600
