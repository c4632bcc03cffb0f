"""Bearer-key authentication and tenancy.

Every ``/v1`` route depends on :func:`principal`. A key belongs to one tenant and sees only that
tenant's runs; another tenant's run answers 404, exactly like a run that does not exist, so ids
cannot be probed. Keys never appear in logs: only their non-secret prefix does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from swarm.api.context import ServerContext, get_ctx
from swarm.api.errors import ApiError
from swarm.store.keys import KeyInfo

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    bearerFormat="swk_<prefix>_<secret>",
    description="An API key from `swarm keys create`, sent as `Authorization: Bearer <key>`.",
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="swarm"'}


@dataclass(frozen=True)
class Principal:
    key: KeyInfo

    @property
    def tenant(self) -> str:
        return self.key.tenant

    @property
    def scope(self) -> str | None:
        """The tenant filter for store queries: None (every tenant) for an admin key."""
        return None if self.key.admin else self.key.tenant


async def principal(
    ctx: Annotated[ServerContext, Depends(get_ctx)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise ApiError(
            401, "missing API key: send `Authorization: Bearer <key>` (create one with `swarm keys create`)", _CHALLENGE
        )
    info = await run_in_threadpool(ctx.store.authenticate, creds.credentials)
    if info is None:
        raise ApiError(401, "unknown API key", _CHALLENGE)
    if info.revoked:
        raise ApiError(403, f"API key {info.prefix} was revoked")
    if info.expired():
        raise ApiError(403, f"API key {info.prefix} expired: create a new one with `swarm keys create`")
    if ctx.rate.per_minute and (wait := await run_in_threadpool(ctx.rate.retry_after, info.id)) is not None:
        raise ApiError(
            429,
            f"API key {info.prefix} made more than {ctx.rate.per_minute} requests in a minute "
            "(SWARM_API_RATE_PER_MINUTE): retry after Retry-After seconds",
            {"Retry-After": str(int(wait))},
        )
    return Principal(info)


Auth = Annotated[Principal, Depends(principal)]
Ctx = Annotated[ServerContext, Depends(get_ctx)]
