"""Alembic migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from swarm.store.migrate import current_revision, ensure_schema, head_revision, upgrade
from swarm.store.models import Base


def test_upgrade_head_matches_the_models(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()


def test_ensure_schema_creates_a_fresh_embedded_database(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    ensure_schema(engine)
    assert current_revision(engine) == head_revision(engine)
    ensure_schema(engine)  # idempotent
    upgrade(engine)  # and so is a second upgrade
    engine.dispose()


def test_workers_refuse_an_outdated_schema(tmp_path):
    import pytest

    from swarm.exceptions import ConfigError

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(ConfigError, match="swarm db upgrade"):
        ensure_schema(engine, upgrade_if_needed=False)
    engine.dispose()
