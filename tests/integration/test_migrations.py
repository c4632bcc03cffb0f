"""Alembic migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from swarm.domain.status import AgentStatus, RunStatus, StepKind, StepStatus
from swarm.exceptions import ConfigError
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.migrate import current_revision, downgrade, ensure_schema, head_revision, upgrade
from swarm.store.models import Base
from swarm.store.store import StateStore
from tests.conftest import PG_ADMIN_URL, _admin_exec, _pg_base, make_settings

T = TypeVar("T")


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
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with pytest.raises(ConfigError, match="swarm db upgrade"):
        ensure_schema(engine, upgrade_if_needed=False)
    engine.dispose()


# --------------------------------------------------------------- 0003: status CHECK constraints

#: The revision before the status CHECK constraints.
BEFORE_CHECKS = "0002"
#: Every table that holds a run's rows; runs, agents and steps are recreated on SQLite.
RUN_TABLES = ("runs", "agents", "agent_defs", "steps", "messages", "events", "artifacts")


@pytest.fixture(params=["sqlite", "postgres"])
def old_db_url(request, tmp_path) -> Iterator[str]:
    """An empty database migrated to the revision before the CHECK constraints."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        name = f"swarm_t_{uuid.uuid4().hex[:12]}"
        _admin_exec(f'CREATE DATABASE "{name}"')
        url = f"{_pg_base(PG_ADMIN_URL)}/{name}"
    engine = create_engine(url)
    upgrade(engine, BEFORE_CHECKS)
    engine.dispose()
    yield url
    if request.param == "postgres":
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: Columns later revisions added (0004: usage and cost, 0005: budgets); rows are compared without them.
LATER_COLUMNS = frozenset(
    {
        "tokens_cached",
        "tokens_reasoning",
        "cost_pico",
        "max_cost_pico",
        "max_tokens",
        "reserved_pico",
        "reserved_tokens",
    }
)


def _written_at_head(store: StateStore, revision: str, write: Callable[[], T]) -> T:
    """Rows written by today's code (which needs the head schema), then the database taken back
    to ``revision`` with them: what a database of that revision held."""
    upgrade(store.engine)
    try:
        return write()
    finally:
        store.engine.dispose()
        downgrade(store.engine, revision)


def _fill(tmp_path, url: str, sim) -> StateStore:
    """Real runs in every status: one finished by the engine, one left open, one cancelled."""
    settings = make_settings(tmp_path, url, sim.url)
    store = StateStore.from_url(url)  # given a store, the runtime does not migrate the database

    def write() -> None:
        with LocalRuntime(settings, store=store) as rt:
            done = rt.wait(rt.submit(run_spec(settings, "t #sim agents=3 tools=2 tool=echo")), timeout=120)
        assert done.status == "succeeded", done.reason
        store.create_run(run_spec(settings, "left ready"))
        cancelled, _ = store.create_run(run_spec(settings, "cancelled"))
        assert store.cancel_run(cancelled)

    _written_at_head(store, BEFORE_CHECKS, write)
    return store


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    meta = MetaData()
    meta.reflect(engine, only=RUN_TABLES)
    with engine.connect() as conn:
        return {
            name: [
                tuple(r)
                for r in conn.execute(
                    select(*(c for c in table.c if c.name not in LATER_COLUMNS)).order_by(*table.primary_key)
                )
            ]
            for name, table in ((n, meta.tables[n]) for n in RUN_TABLES)
        }


def _checked_values(engine: Engine) -> dict[str, set[str]]:
    found = {}
    for table in ("runs", "agents", "steps"):
        for ck in inspect(engine).get_check_constraints(table):
            found[ck["name"]] = set(re.findall(r"'([a-z_]+)'", ck["sqltext"]))
    return found


def test_upgrade_keeps_every_row_and_adds_the_status_checks(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim)
    engine = store.engine
    before = _rows(engine)
    assert {name: bool(rows) for name, rows in before.items()} == {
        "runs": True,
        "agents": True,
        "agent_defs": True,
        "steps": True,
        "messages": True,
        "events": True,
        "artifacts": False,
    }
    with engine.connect() as conn:
        statuses = set(conn.execute(text("SELECT DISTINCT status FROM steps")).scalars())
    assert {"succeeded", "ready", "cancelled"} <= statuses

    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    assert _rows(engine) == before
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    # The recreated tables still cascade from runs (SQLite rebuilt them).
    for table in ("agents", "steps"):
        (fk,) = inspect(engine).get_foreign_keys(table)
        assert fk["referred_table"] == "runs" and fk["options"].get("ondelete") == "CASCADE"
    # The database now holds exactly the enums' values, and refuses anything else.
    assert _checked_values(engine) == {
        "ck_runs_status": {s.value for s in RunStatus},
        "ck_agents_status": {s.value for s in AgentStatus},
        "ck_steps_status": {s.value for s in StepStatus},
        "ck_steps_kind": {k.value for k in StepKind},
    }
    for table, column in (("runs", "status"), ("agents", "status"), ("steps", "status"), ("steps", "kind")):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = 'queued'"))
    # The store still works on the migrated database.
    open_run = next(r for r in store.list_runs() if r.status == "running")
    assert store.cancel_run(open_run.id)

    after = _rows(engine)
    downgrade(engine, BEFORE_CHECKS)
    assert current_revision(engine) == BEFORE_CHECKS
    assert _rows(engine) == after
    assert _checked_values(engine) == {}
    engine.dispose()


def test_upgrade_refuses_an_unknown_status_and_changes_nothing(tmp_path, old_db_url, sim):
    store = StateStore.from_url(old_db_url)
    settings = make_settings(tmp_path, old_db_url, sim.url)
    run_id, _ = _written_at_head(store, BEFORE_CHECKS, lambda: store.create_run(run_spec(settings, "odd")))
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'queued' WHERE id = :id"), {"id": run_id})
    before = _rows(store.engine)

    with pytest.raises(ConfigError, match=r"runs.status = 'queued' in 1 row\(s\)"):
        upgrade(store.engine)
    assert current_revision(store.engine) == BEFORE_CHECKS
    assert _rows(store.engine) == before
    store.engine.dispose()


# --------------------------------------------------------------- 0004: usage and cost


def test_upgrade_to_usage_columns_keeps_rows_and_leaves_old_costs_unknown(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim)
    upgrade(store.engine, "0003")
    before = _rows(store.engine)
    upgrade(store.engine)
    assert _rows(store.engine) == before
    done = next(r for r in store.list_runs() if r.status == "succeeded")
    # Written before costs were recorded: unknown, never a made-up 0.
    assert (done.tokens_cached, done.cost_usd) == (0, None)
    assert all(a["cost_usd"] is None for a in store.agent_tree(done.id))
    downgrade(store.engine, "0003")
    assert _rows(store.engine) == before
    store.engine.dispose()
