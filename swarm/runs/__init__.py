"""The one Runs service: what every CLI command and every API route does to runs.

:class:`~swarm.runs.base.Runs` is the interface; :mod:`swarm.runs.local` implements it on the
database (embedded threads or a Celery cluster), :mod:`swarm.runs.remote` over a swarm server's
REST API. :func:`~swarm.runs.factory.open_runs` picks one from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarm.runs.base import Cancelled, RunRequest, Runs

if TYPE_CHECKING:
    from swarm.runs.factory import open_runs

__all__ = ["Cancelled", "RunRequest", "Runs", "open_runs"]


def __getattr__(name: str) -> Any:
    # open_runs brings the implementations (the store, the runtime, an HTTP client): only when
    # asked for, so `swarm ls` does not pay for what `swarm run` needs (docs/benchmarks.md).
    if name == "open_runs":
        from swarm.runs.factory import open_runs

        return open_runs
    raise AttributeError(name)
