"""The one Runs service: what every CLI command and every API route does to runs.

:class:`~swarm.runs.base.Runs` is the interface; :mod:`swarm.runs.local` implements it on the
database (embedded threads or a Celery cluster), :mod:`swarm.runs.remote` over a swarm server's
REST API. :func:`~swarm.runs.factory.open_runs` picks one from the settings.
"""

from swarm.runs.base import Cancelled, RunRequest, Runs
from swarm.runs.factory import open_runs

__all__ = ["Cancelled", "RunRequest", "Runs", "open_runs"]
