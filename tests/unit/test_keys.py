"""API keys: shown once, stored hashed, scoped to a tenant, revocable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from swarm.exceptions import InputError, NotFound
from swarm.store.keys import hash_key
from swarm.store.models import ApiKey
from swarm.store.store import StateStore


@pytest.fixture
def store(sqlite_url):
    s = StateStore.from_url(sqlite_url)
    yield s
    s.engine.dispose()


def test_a_key_is_stored_only_as_its_hash(store):
    info, key = store.create_key("acme", "ci")
    assert key.startswith(f"swk_{info.prefix}_") and len(key) > 40
    with store.read() as conn:
        row = conn.execute(select(ApiKey)).one()
    assert row.key_hash == hash_key(key)
    assert key not in {str(v) for v in row._mapping.values()}
    assert store.authenticate(key) == info


def test_unknown_malformed_and_revoked_keys(store):
    info, key = store.create_key("acme")
    assert store.authenticate("swk_nope_nope") is None
    assert store.authenticate("Bearer " + key) is None
    assert store.authenticate("x" * 10_000) is None
    revoked = store.revoke_key(info.prefix)
    assert revoked.revoked and store.authenticate(key).revoked
    assert store.revoke_key(info.id).revoked_at == revoked.revoked_at  # idempotent, by id too
    with pytest.raises(NotFound):
        store.revoke_key("missing")


def test_listing_and_tenants(store):
    a, _ = store.create_key("acme", "one")
    b, _ = store.create_key("globex", "two", admin=True)
    assert [k.prefix for k in store.list_keys()] == [a.prefix, b.prefix]
    assert [k.prefix for k in store.list_keys(tenant="globex")] == [b.prefix]
    assert store.list_keys(tenant="globex")[0].admin
    store.revoke_key(a.prefix)
    assert [k.prefix for k in store.list_keys(include_revoked=False)] == [b.prefix]
    with pytest.raises(InputError):
        store.create_key("bad tenant/../")
