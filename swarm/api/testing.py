"""Helpers for tests and benchmarks: a real API server on 127.0.0.1 with keys to call it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from swarm.api.app import create_app
from swarm.api.server import BackgroundServer
from swarm.config import Settings
from swarm.domain.status import RUN_TERMINAL
from swarm.store.store import StateStore


@dataclass
class LiveApi:
    url: str
    store: StateStore
    settings: Settings

    def key(self, tenant: str = "tenant-a", *, admin: bool = False, name: str | None = None) -> str:
        return self.store.create_key(tenant, name, admin=admin)[1]

    def client(self, key: str | None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait(self, run_id: str, timeout: float = 60.0, poll: float = 0.1) -> dict[str, Any]:
        """Poll the store (not the API) until the run ends."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.store.run_summary(run_id)
            if s.status in RUN_TERMINAL:
                return s.as_dict()
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {s.status} after {timeout} s")
            time.sleep(poll)


@contextmanager
def live_api(settings: Settings, *, store: StateStore | None = None, **app_kw: Any) -> Iterator[LiveApi]:
    """Serve ``create_app(settings)`` on a free port; the store is opened from settings if not given."""
    own = store is None
    st = store or StateStore.from_url(settings.db_url)
    try:
        with BackgroundServer(create_app(settings, store=st, **app_kw)) as srv:
            yield LiveApi(srv.url, st, settings)
    finally:
        if own:
            st.engine.dispose()
