"""The sweeper's election through the database, on both databases: one holder at a time, a holder
that stops renewing loses the role when its lease lapses (database clock), a clean stop hands it
over at once, and an idle sweeper logs nothing."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import update

from swarm.constants import SWEEPER_ROLE
from swarm.engine.election import ElectedSweeper
from swarm.store.models import CLUSTER_LEASES
from swarm.store.store import StateStore


def test_one_holder_at_a_time_and_takeover_after_the_lease(store: StateStore) -> None:
    assert store.role_holder(SWEEPER_ROLE).holder is None  # created free by the migration
    assert store.hold_role(SWEEPER_ROLE, "a", 5.0)
    assert not store.hold_role(SWEEPER_ROLE, "b", 5.0)  # a's lease runs
    assert store.hold_role(SWEEPER_ROLE, "a", 5.0)  # renewed
    held = store.role_holder(SWEEPER_ROLE)
    assert held.holder == "a" and 4.0 < held.expires_in <= 5.0
    with store.tx() as conn:  # a stopped renewing (it died) and its lease ran out
        conn.execute(update(CLUSTER_LEASES).values(expires_at=CLUSTER_LEASES.c.expires_at - 10))
    assert store.hold_role(SWEEPER_ROLE, "b", 5.0)
    assert not store.hold_role(SWEEPER_ROLE, "a", 5.0)  # a woke up: b holds it now
    assert not store.release_role(SWEEPER_ROLE, "a")  # only the holder can release
    assert store.release_role(SWEEPER_ROLE, "b")
    assert store.hold_role(SWEEPER_ROLE, "a", 5.0)  # released: taken at once
    assert store.hold_role("another-role", "a", 1.0)  # a role without a row gets one


def test_only_the_holder_sweeps_and_a_clean_stop_hands_over(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[object] = []
    kw = {"interval": 0.05, "republish_after": 5.0, "dispatch": sent.extend}
    first, second = ElectedSweeper(store, "h:1:a", **kw), ElectedSweeper(store, "h:2:b", **kw)
    caplog.set_level(logging.DEBUG, logger="swarm.engine.election")
    assert first.tick() == 0 and first.leading
    assert second.tick() == 0 and not second.leading
    assert [r.getMessage() for r in caplog.records] == ["this process is now the cluster's sweeper (h:1:a)"]
    caplog.clear()
    for _ in range(5):  # nothing to do: nothing said
        first.tick()
        second.tick()
    assert caplog.records == []
    first.stop()
    assert store.role_holder(SWEEPER_ROLE).holder is None
    assert second.tick() == 0 and second.leading  # taken over on its next try
    second.start()
    time.sleep(0.2)
    second.stop()
    assert not second.is_alive()
    assert sent == []


def test_cluster_tables_downgrade_and_upgrade_again(db_url: str) -> None:
    from swarm.store.migrate import current_revision, downgrade, head_revision, upgrade

    store = StateStore.from_url(db_url)
    try:
        assert store.hold_role(SWEEPER_ROLE, "a", 5.0)
        downgrade(store.engine, "0007")  # the revision before the cluster tables
        assert current_revision(store.engine) == "0007"
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision(store.engine)
        assert store.role_holder(SWEEPER_ROLE).holder is None  # recreated free
    finally:
        store.engine.dispose()
