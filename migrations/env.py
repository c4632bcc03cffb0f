"""Alembic environment bound to swarm's metadata. Run through `swarm db upgrade` (or alembic)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from swarm.store.db import make_engine
from swarm.store.migrate import sqlite_foreign_keys_off
from swarm.store.models import Base

config = context.config
target_metadata = Base.metadata

#: Any fixed number: concurrent `swarm db upgrade`s on PostgreSQL queue on this lock instead of
#: racing each other (alembic has no guard of its own).
ADVISORY_LOCK_KEY = 0x5A52_4D00


def _run(conn: Connection) -> None:
    is_pg = conn.dialect.name == "postgresql"
    if is_pg:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    try:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_pg:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()


def run_migrations_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection, sqlite_foreign_keys_off(connection):
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
