"""Schema migrations (Alembic), usable from an installed package: no alembic.ini needed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from swarm.exceptions import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(url: str) -> Config:
    # alembic is imported only to migrate or to ask it: ensure_schema's fast path needs neither.
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Foreign keys off on a SQLite connection for the duration, then as they were.

    A SQLite migration that alters a table recreates it (copy, DROP, rename); with foreign keys on,
    dropping ``runs`` would cascade and delete every agent, step and message of every run. SQLite
    ignores the pragma inside a transaction, so it is set (and checked) before one begins.
    No-op on other databases.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    was_on = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    still_on = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    conn.commit()
    if still_on:
        raise ConfigError("cannot turn SQLite foreign keys off for the migration (a transaction is open)")
    try:
        yield
    finally:
        conn.rollback()
        conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if was_on else 'OFF'}")
        conn.commit()


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn, sqlite_foreign_keys_off(conn), conn.begin():
        cfg.attributes["connection"] = conn
        if down:
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _migrate(engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Back to *revision* (operators' escape hatch, and the migration tests)."""
    _migrate(engine, revision, down=True)


def ensure_schema(engine: Engine, *, upgrade_if_needed: bool = True) -> None:
    """Bring the schema to head, or (for workers) refuse to run against an old one."""
    stored = _stored_revision(engine)
    if stored is not None and stored == _file_head():
        return  # the common case, without importing alembic (~0.2 s of a CLI command's start)
    if current_revision(engine) == head_revision(engine):
        return
    if not upgrade_if_needed:
        raise ConfigError("the database schema is not up to date: run `swarm db upgrade` first")
    upgrade(engine)


def _stored_revision(engine: Engine) -> str | None:
    """The database's revision, read directly (None: no version table, or not one revision)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except SQLAlchemyError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


_REVISION = re.compile(r"^revision(?:: *str)? *= *[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:: *[^=]+)? *= *[\"']([^\"']+)[\"']", re.M)


def _file_head() -> str | None:
    """The head revision from the migration files' ``revision`` / ``down_revision`` lines: the one
    revision no other revises (None if that is not exactly one; alembic then decides)."""
    import migrations

    revisions, revised = set(), set()
    for path in (Path(migrations.__file__).parent / "versions").glob("*.py"):
        text = path.read_text()
        if (rev := _REVISION.search(text)) is not None:
            revisions.add(rev.group(1))
        if (down := _DOWN.search(text)) is not None:
            revised.add(down.group(1))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None
