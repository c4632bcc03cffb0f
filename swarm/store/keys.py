"""API keys of the REST server: created, listed, revoked and checked here; part of the state store.

A key looks like ``swk_<prefix>_<secret>``. Only ``sha256(key)`` is stored: the secret has 256
bits of entropy, so a plain hash (no salt, no slow KDF) cannot be brute-forced, and lookup by
hash is one indexed query. The prefix is not secret; it names the key in listings and logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_, select, update

from swarm.exceptions import InputError, NotFound
from swarm.store.session import Session
from swarm.store.tables import API_KEYS

KEY_SCHEME = "swk"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class KeyInfo:
    """What the server knows about a caller once its key checks out. Never holds the key."""

    id: str
    prefix: str
    tenant: str
    name: str | None
    admin: bool
    created_at: float
    revoked_at: float | None
    expires_at: float | None = None
    #: Not part of a key's identity: two reads of one key are equal whenever it was used.
    last_used_at: float | None = field(default=None, compare=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "tenant": self.tenant,
            "name": self.name,
            "admin": self.admin,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise InputError(f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return tenant


#: Seconds: how exactly a key's last use is kept.
LAST_USED_RESOLUTION = 60.0


class Keys:
    """API keys: create, list, revoke, authenticate."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create_key(
        self, tenant: str = "default", name: str | None = None, *, admin: bool = False, expires_in: float | None = None
    ) -> tuple[KeyInfo, str]:
        """A new key for *tenant*, valid for ``expires_in`` seconds (None: until revoked); returns
        its record and the key itself (shown once, never stored)."""
        check_tenant(tenant)
        if expires_in is not None and expires_in <= 0:
            raise InputError("a key's lifetime must be positive")
        if name is not None and len(name) > 128:
            raise InputError("key name is too long (max 128 characters)")
        prefix = secrets.token_hex(4)
        key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        now = time.time()
        expires_at = None if expires_in is None else now + expires_in
        info = KeyInfo(uuid.uuid4().hex, prefix, tenant, name, admin, now, None, expires_at)
        with self.session.tx() as conn:
            conn.execute(
                insert(API_KEYS).values(
                    id=info.id,
                    prefix=prefix,
                    key_hash=hash_key(key),
                    tenant=tenant,
                    name=name,
                    admin=admin,
                    created_at=info.created_at,
                    revoked_at=None,
                    expires_at=expires_at,
                )
            )
        return info, key

    def list_keys(self, *, tenant: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        with self.session.read() as conn:
            q = select(API_KEYS).order_by(API_KEYS.c.created_at)
            if tenant is not None:
                q = q.where(API_KEYS.c.tenant == tenant)
            if not include_revoked:
                q = q.where(API_KEYS.c.revoked_at.is_(None))
            return [_info(r) for r in conn.execute(q).all()]

    def revoke_key(self, ref: str) -> KeyInfo:
        """Revoke a key by its id or prefix. Revoking twice is harmless."""
        with self.session.tx() as conn:
            row = conn.execute(select(API_KEYS).where(or_(API_KEYS.c.id == ref, API_KEYS.c.prefix == ref))).first()
            if row is None:
                raise NotFound(f"no API key {ref!r}; `swarm keys list` shows their prefixes")
            if row.revoked_at is None:
                conn.execute(update(API_KEYS).where(API_KEYS.c.id == row.id).values(revoked_at=time.time()))
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.id == row.id)).one()
        return _info(row)

    def authenticate(self, key: str) -> KeyInfo | None:
        """The record of *key* (revoked or not), or None if it was never issued."""
        if not key.startswith(f"{KEY_SCHEME}_") or len(key) > 200:
            return None
        with self.session.read() as conn:
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.key_hash == hash_key(key))).first()
        if row is None:
            return None
        now = time.time()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            # At most one write per key per LAST_USED_RESOLUTION, not one per request.
            with self.session.tx() as conn:
                conn.execute(update(API_KEYS).where(API_KEYS.c.id == row.id).values(last_used_at=now))
        return dataclasses.replace(_info(row), last_used_at=now)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        row.id,
        row.prefix,
        row.tenant,
        row.name,
        bool(row.admin),
        row.created_at,
        row.revoked_at,
        row.expires_at,
        row.last_used_at,
    )
