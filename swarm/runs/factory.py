"""Which Runs service a process uses, from its settings."""

from __future__ import annotations

from swarm.config import Settings
from swarm.runs.base import Runs
from swarm.runs.local import ClusterRuns, EmbeddedRuns
from swarm.runs.remote import RemoteRuns
from swarm.store.store import StateStore


def open_runs(
    settings: Settings, api_url: str | None = None, *, store: StateStore | None = None, serving: bool = False
) -> Runs:
    """A swarm server's runs with ``api_url`` (``--api``) or SWARM_API_URL; else the cluster's with
    SWARM_BROKER_URL; else this process's. A server (``serving``) never talks to another server, and
    in embedded mode adopts the runs its last shutdown interrupted."""
    if not serving and (remote := RemoteRuns.from_settings(settings, api_url)) is not None:
        return remote
    if settings.distributed:
        return ClusterRuns(settings, store)
    runs = EmbeddedRuns(settings, store)
    if serving:
        runs.adopt_interrupted()
    return runs
