"""Schema migrations (Alembic), usable from an installed package: no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from swarm.exceptions import ConfigError


def alembic_config(url: str) -> Config:
    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(engine: Engine) -> str | None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def ensure_schema(engine: Engine, *, upgrade_if_needed: bool = True) -> None:
    """Bring the schema to head, or (for workers) refuse to run against an old one."""
    if current_revision(engine) == head_revision(engine):
        return
    if not upgrade_if_needed:
        raise ConfigError("the database schema is not up to date: run `swarm db upgrade` first")
    upgrade(engine)
