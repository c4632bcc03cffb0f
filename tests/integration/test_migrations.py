"""Alembic migrations produce exactly the schema the code declares, on both databases."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from swarm.domain.status import AgentStatus, RunStatus, StepKind, StepStatus
from swarm.exceptions import ConfigError
from swarm.runtime import LocalRuntime, run_spec
from swarm.store import step_stats
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
    """An empty database at head: a test writes its rows with today's code, then takes it back to
    the revision it upgrades from (today's code writes columns an old schema does not have)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        name = f"swarm_t_{uuid.uuid4().hex[:12]}"
        _admin_exec(f'CREATE DATABASE "{name}"')
        url = f"{_pg_base(PG_ADMIN_URL)}/{name}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    if request.param == "postgres":
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(
    tmp_path, url: str, sim, revision: str = BEFORE_CHECKS, task: str = "t #sim agents=3 tools=2 tool=echo"
) -> StateStore:
    """Real runs in every status: one finished by the engine, one left open, one cancelled; then
    the schema goes back to ``revision``."""
    settings = make_settings(tmp_path, url, sim.url)
    store = StateStore.from_url(url)  # given a store, the runtime does not migrate the database
    with LocalRuntime(settings, store=store) as rt:
        done = rt.wait(rt.submit(run_spec(settings, task, max_spawns_per_turn=2)), timeout=120)
    assert done.status == "succeeded", done.reason
    store.create_run(run_spec(settings, "left ready"))
    cancelled, _ = store.create_run(run_spec(settings, "cancelled"))
    assert store.cancel_run(cancelled)
    store.engine.dispose()
    downgrade(store.engine, revision)
    return store


def _rows(engine: Engine) -> dict[str, list[dict[str, object]]]:
    meta = MetaData()
    meta.reflect(engine, only=RUN_TABLES)
    with engine.connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key))]
            for name, table in ((n, meta.tables[n]) for n in RUN_TABLES)
        }


def _same_rows(a: dict[str, list[dict[str, object]]], b: dict[str, list[dict[str, object]]]) -> bool:
    """The same rows in every table, over the columns both schemas have (a migration that adds or
    drops a column keeps every row and every other value)."""

    def common(rows: list[dict[str, object]], other: list[dict[str, object]]) -> list[dict[str, object]]:
        keep = set(rows[0]) & set(other[0]) if rows and other else set()
        return [{k: v for k, v in row.items() if k in keep} for row in rows]

    return all(common(a[t], b[t]) == common(b[t], a[t]) and len(a[t]) == len(b[t]) for t in RUN_TABLES)


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
    assert _same_rows(_rows(engine), before)
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
    assert _same_rows(_rows(engine), after)
    assert _checked_values(engine) == {}
    engine.dispose()


def test_upgrade_refuses_an_unknown_status_and_changes_nothing(tmp_path, old_db_url, sim):
    store = StateStore.from_url(old_db_url)
    settings = make_settings(tmp_path, old_db_url, sim.url)
    run_id, _ = store.create_run(run_spec(settings, "odd"))
    store.engine.dispose()
    downgrade(store.engine, BEFORE_CHECKS)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'queued' WHERE id = :id"), {"id": run_id})
    before = _rows(store.engine)

    with pytest.raises(ConfigError, match=r"runs.status = 'queued' in 1 row\(s\)"):
        upgrade(store.engine)
    assert current_revision(store.engine) == BEFORE_CHECKS
    assert _rows(store.engine) == before
    store.engine.dispose()


# --------------------------------------------------------------- 0005: loop guards

BEFORE_GUARDS = "0004"


def test_loop_guard_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_GUARDS, "t #sim agents=3 tools=2 tool=echo scenario=repeat")
    engine = store.engine
    assert current_revision(engine) == BEFORE_GUARDS
    before = _rows(engine)
    assert "max_spawns_per_turn" not in before["runs"][0] and "call_key" not in before["steps"][0]

    upgrade(engine, "0005")
    assert current_revision(engine) == "0005"
    upgrade(engine)  # and on to head (later revisions add tables and columns of their own)
    assert current_revision(engine) == head_revision(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    # Rows written before the upgrade have no spawn cap and count no repeats.
    assert {r["max_spawns_per_turn"] for r in rows["runs"]} == {None}
    assert {r["call_key"] for r in rows["steps"]} == {None}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []

    # The guards work on the migrated database.
    settings = make_settings(tmp_path, old_db_url, sim.url, max_repeats=1)
    with LocalRuntime(settings, store=store) as rt:
        run_id = rt.submit(
            run_spec(settings, "t #sim agents=2 tools=2 tool=echo scenario=repeat", max_spawns_per_turn=1)
        )
        done = rt.wait(run_id, timeout=120)
    assert done.status == "succeeded" and done.subagents == 2 and done.tool_calls == 2, done
    after = _rows(engine)

    downgrade(engine, BEFORE_GUARDS)
    assert current_revision(engine) == BEFORE_GUARDS
    assert _same_rows(_rows(engine), after)
    assert "call_key" not in _rows(engine)["steps"][0]
    engine.dispose()


# ---------------------------------------------------- 0007: key expiry, idempotency keys

BEFORE_KEYS = "0006"


def test_key_expiry_and_idempotency_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_KEYS, "t #sim agents=2 tools=1 tool=echo")
    engine = store.engine
    before = _rows(engine)
    assert "idempotency_key" not in before["runs"][0]

    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    assert {r["idempotency_key"] for r in rows["runs"]} == {None}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    info, key = store.create_key("t", expires_in=60.0)
    assert store.authenticate(key).expires_at == info.expires_at

    downgrade(engine, BEFORE_KEYS)
    assert current_revision(engine) == BEFORE_KEYS
    assert "idempotency_key" not in _rows(engine)["runs"][0]
    engine.dispose()


# --------------------------------------------------------------- 0004: usage and cost


def test_upgrade_to_usage_columns_keeps_rows_and_leaves_old_costs_unknown(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, "0003")
    before = _rows(store.engine)
    upgrade(store.engine)
    assert _same_rows(_rows(store.engine), before)
    done = next(r for r in store.list_runs() if r.status == "succeeded")
    # Written before costs were recorded: unknown, never a made-up 0.
    assert (done.tokens_cached, done.cost_usd) == (0, None)
    assert all(a["cost_usd"] is None for a in store.agent_tree(done.id))
    downgrade(store.engine, "0003")
    assert _same_rows(_rows(store.engine), before)
    store.engine.dispose()


# --------------------------------------------------------------- 0010: approvals

BEFORE_APPROVALS = "0009"


def test_approvals_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_APPROVALS, "t #sim agents=2 tools=1 tool=echo")
    engine = store.engine
    before = _rows(engine)
    assert "approve_tools" not in before["runs"][0]

    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    assert {r["approve_tools"] for r in rows["runs"]} == {None}  # older runs need no approvals
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert "awaiting_approval" in _checked_values(engine)["ck_steps_status"]

    # A call awaiting approval on the migrated database; the downgrade refuses to lose it.
    settings = make_settings(tmp_path, old_db_url, sim.url, approve_tools="echo")
    with LocalRuntime(settings, store=store) as rt:
        run_id = rt.submit(run_spec(settings, "t #sim agents=1 tools=1 tool=echo"))
        deadline = time.monotonic() + 30
        while not store.approvals.find(run_id=run_id, pending=True):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # Refused by 0010 itself, before it changes anything (later migrations go down first: each
    # commits on its own, so the refusal is checked from 0010, then the head is restored).
    downgrade(engine, "0010")
    with pytest.raises(ConfigError, match="await approval"):
        downgrade(engine, BEFORE_APPROVALS)
    assert current_revision(engine) == "0010"
    assert "approvals" in inspect(engine).get_table_names()
    upgrade(engine)
    assert store.cancel_run(run_id)
    after = _rows(engine)

    downgrade(engine, BEFORE_APPROVALS)
    assert current_revision(engine) == BEFORE_APPROVALS
    assert _same_rows(_rows(engine), after)
    assert "awaiting_approval" not in _checked_values(engine)["ck_steps_status"]
    assert "approvals" not in inspect(engine).get_table_names()
    engine.dispose()


# --------------------------------------------------------------- 0013: a run's own MCP config


def test_run_mcp_config_column_upgrades_and_downgrades_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, "0009", "t #sim agents=2 tools=1 tool=echo")
    engine = store.engine
    before = _rows(engine)
    assert "mcp_config" not in before["runs"][0]

    upgrade(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    assert {r["mcp_config"] for r in rows["runs"]} == {None}  # old runs: the deployment's servers only
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []

    downgrade(engine, "0009")
    assert current_revision(engine) == "0009"
    assert "mcp_config" not in _rows(engine)["runs"][0]
    assert _same_rows(_rows(engine), before)


# ------------------------------------------- 0011: fork origin, fan-out item and fan-in counter

BEFORE_FORK = "0009"


def test_fork_and_fanout_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_FORK)
    engine = store.engine
    before = _rows(engine)
    assert "item" not in before["agents"][0] and "forked_from_run_id" not in before["runs"][0]

    upgrade(engine, "0011")
    assert current_revision(engine) == "0011"
    rows = _rows(engine)
    assert _same_rows(rows, before)
    assert {r["forked_from_run_id"] for r in rows["runs"]} == {None}
    assert {r["item"] for r in rows["agents"]} == {None}
    assert {r["pending_children"] for r in rows["steps"]} == {None}
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []

    # A fan-out (several subagents of one step) works on the migrated database.
    settings = make_settings(tmp_path, old_db_url, sim.url, tool_assign_tasks=True)
    with LocalRuntime(settings, store=store) as rt:
        done = rt.wait(rt.submit(run_spec(settings, "t #sim agents=1 fanout=1 tools=1 tool=echo")), timeout=120)
    assert done.status == "succeeded" and done.subagents == 1, done
    after = _rows(engine)

    downgrade(engine, BEFORE_FORK)
    assert current_revision(engine) == BEFORE_FORK
    assert _same_rows(_rows(engine), after)
    assert "pending_children" not in _rows(engine)["steps"][0]
    parent_step = {u["column_names"][0] for u in inspect(engine).get_unique_constraints("agents")}
    assert parent_step == {"parent_step_id"}  # unique again
    engine.dispose()


# ------------------------------------------- 0014: the writer of each file, images for the model

BEFORE_FILE_WRITERS = "0009"


def test_file_writer_and_image_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_FILE_WRITERS, "t #sim agents=2 tools=1 tool=python scenario=files")
    engine = store.engine
    before = _rows(engine)
    assert before["artifacts"] and "step_id" not in before["artifacts"][0] and "images" not in before["messages"][0]

    upgrade(engine, "0014")
    assert current_revision(engine) == "0014"
    upgrade(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    # Files saved before the upgrade have no known writer; no earlier message carries images.
    assert {r["step_id"] for r in rows["artifacts"]} == {None}
    assert {r["images"] for r in rows["messages"]} == {None}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert {f.step_id for f in store.run_files(rows["artifacts"][0]["run_id"])} == {None}

    downgrade(engine, BEFORE_FILE_WRITERS)
    assert current_revision(engine) == BEFORE_FILE_WRITERS
    assert _same_rows(_rows(engine), before)
    assert "step_id" not in _rows(engine)["artifacts"][0]
    engine.dispose()


# --------------------------------------------------------------- 0012: run owners

BEFORE_OWNER = "0009"


def test_run_owner_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, BEFORE_OWNER, "t #sim agents=2 tools=1 tool=echo")
    engine = store.engine
    before = _rows(engine)
    assert "owner_until" not in before["runs"][0]

    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    # Runs from before have no owner: judged as the cluster's (no sweeper, no live step: interrupted).
    assert {(r["owner"], r["owner_until"]) for r in rows["runs"]} == {(None, None)}
    left_open = next(r for r in store.list_runs() if r.task == "left ready")
    assert (left_open.status, left_open.state) == ("running", "interrupted")
    # metric_totals was filled from the finished runs' steps: /metrics counts what a scan counts.
    with engine.connect() as conn:
        scanned = step_stats.step_counts(step_stats.aggregate(conn))
    assert store.metrics_snapshot()["steps"] == scanned

    downgrade(engine, BEFORE_OWNER)
    assert current_revision(engine) == BEFORE_OWNER
    assert "owner" not in _rows(engine)["runs"][0]
    engine.dispose()


# --------------------------------------------------- 0016: a run's provider and its own limits

PROVIDER_COLUMNS = {"provider", "provider_concurrency", "provider_rpm", "provider_tpm"}


def test_run_provider_columns_upgrade_and_downgrade_keeping_every_row(tmp_path, old_db_url, sim):
    store = _fill(tmp_path, old_db_url, sim, "0014", "t #sim agents=2 tools=1 tool=echo")
    engine = store.engine
    before = _rows(engine)
    assert not PROVIDER_COLUMNS & set(before["runs"][0])

    upgrade(engine)
    rows = _rows(engine)
    assert _same_rows(rows, before)
    assert {r[c] for r in rows["runs"] for c in PROVIDER_COLUMNS} == {None}  # old runs: the default provider
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []

    downgrade(engine, "0014")
    assert current_revision(engine) == "0014"
    assert not PROVIDER_COLUMNS & set(_rows(engine)["runs"][0])
    assert _same_rows(_rows(engine), before)
