"""Shared fixtures: real PostgreSQL (a fresh database per test, cloned from a migrated template),
SQLite files, Redis, and the simulated model over real HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from swarm.config import Settings
from swarm.sim import SimConfig, SimServer
from swarm.store.migrate import upgrade
from swarm.store.store import StateStore

#: Admin connection to the test PostgreSQL server (trust auth on 127.0.0.1 in CI).
PG_ADMIN_URL = os.environ.get("SWARM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


def _pg_base(url: str) -> str:
    return url.rsplit("/", 1)[0]


def _admin_exec(sql: str) -> None:
    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.execute(text(sql))
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test clones it (fast, and isolated)."""
    name = f"swarm_tpl_{os.getpid()}"
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')
    _admin_exec(f'CREATE DATABASE "{name}"')
    url = f"{_pg_base(PG_ADMIN_URL)}/{name}"
    eng = create_engine(url)
    upgrade(eng)
    eng.dispose()
    yield name
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"swarm_t_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield f"{_pg_base(PG_ADMIN_URL)}/{name}"
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'swarm.db'}"
    eng = create_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on the embedded SQLite default and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(db_url: str) -> Iterator[StateStore]:
    s = StateStore.from_url(db_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(port=0)) as server:
        yield server


def make_settings(tmp_path: Path, db_url: str, llm_url: str, **overrides: object) -> Settings:
    """Settings isolated from the developer's environment and .env file."""
    values: dict[str, object] = dict(
        home=tmp_path, database_url=db_url, llm_base_url=llm_url, broker_url="", llm_max_retries=3, python_timeout=10.0
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL
