"""The Celery side of swarm: ``celery -A workers worker`` finds :data:`app` here.

Workers need only three things, all from the environment: ``SWARM_DATABASE_URL`` (shared
PostgreSQL), ``SWARM_BROKER_URL`` (Redis) and the model settings (``SWARM_LLM_*``). Everything
a step needs, including a run's workspace files, comes from Postgres, so any worker on any
machine can take any step. ``swarm worker`` wraps the celery command lines with sane defaults.
"""

from workers import tasks as _tasks  # noqa: F401  (registers the step tasks on app)
from workers.celery_app import app

__all__ = ["app"]
