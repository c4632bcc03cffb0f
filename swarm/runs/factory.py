"""Which Runs service a process uses, from its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarm.config import Settings
from swarm.runs.base import Runs

if TYPE_CHECKING:
    from swarm.store.store import StateStore


def open_runs(
    settings: Settings, api_url: str | None = None, *, store: StateStore | None = None, serving: bool = False
) -> Runs:
    """A swarm server's runs with ``api_url`` (``--api``) or SWARM_API_URL; else the cluster's with
    SWARM_BROKER_URL; else this process's. A server (``serving``) never talks to another server, and
    in embedded mode adopts the runs its last shutdown interrupted."""
    # Each implementation is imported only when chosen: the REST client brings httpx, the local
    # ones the store (and, to execute, the runtime) — a command's start-up pays for its own.
    if not serving and (api_url or settings.api_url):
        from swarm.runs.remote import RemoteRuns

        if (remote := RemoteRuns.from_settings(settings, api_url)) is not None:
            return remote
    from swarm.runs.local import ClusterRuns, EmbeddedRuns

    if settings.distributed:
        return ClusterRuns(settings, store)
    runs = EmbeddedRuns(settings, store)
    if serving:
        runs.adopt_interrupted()
    return runs
