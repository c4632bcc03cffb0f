"""A worker runs only its own deployment's steps.

Every step message carries the publishing deployment's cluster id (the id stored in its database,
``StateStore.cluster_id``). A worker whose database holds another id — a second deployment sharing
the Redis database — must not take the message: its database does not know the step, so running
it would find nothing to claim and ack it, and the owner's step would wait for its sweeper. The
worker refuses it instead: an ERROR naming both ids (once per foreign deployment, then at most
every :data:`REPEAT_EVERY` seconds with a count), then hands it back at once: a copy (same task,
id, arguments and queue) goes to the end of its queue, where a worker of the right deployment
takes it. The refusing slot then waits :data:`REFUSAL_PAUSE` seconds before it acks the original
and takes another message, so a misconfigured worker cannot spin on other people's messages, and
the owner does not wait for that pause. If the copy cannot be published, the original itself is
handed back (``Reject(requeue=True)``), after the pause. Even if the message were lost, the
owner's sweeper would re-publish the step from its database. A message without an id (published
by an older version) is run as before.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery, current_task
from celery.exceptions import Ignore, Reject

log = logging.getLogger(__name__)

#: Seconds a slot waits before handing a foreign message back (bounds a wrong worker's churn).
REFUSAL_PAUSE = 0.5
#: A foreign deployment's refusals are logged at most this often (the first one at once).
REPEAT_EVERY = 10.0


class Refusals:
    """Counts and logs refused messages per foreign cluster id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: foreign id → (refused since the last log line, when that line was written)
        self._seen: dict[str, tuple[int, float]] = {}

    def refuse(self, app: Celery, mine: str, theirs: str, step_id: str, run_id: str) -> Ignore | Reject:
        """Log (rate-limited), hand the message back, pause; returns the exception to raise: Ignore
        (ack the original: its copy is queued) or Reject (requeue the original)."""
        now = time.monotonic()
        with self._lock:
            count, logged = self._seen.get(theirs, (0, -REPEAT_EVERY))
            count += 1
            due = now - logged >= REPEAT_EVERY
            self._seen[theirs] = (0, now) if due else (count, logged)
        if due:
            log.error(
                "refused %d step message(s) of cluster %s (e.g. step %s of run %s): this worker's database is "
                "cluster %s. Two deployments share this Redis database; give each its own (SWARM_BROKER_URL). "
                "The message goes back to its queue for a worker of cluster %s.",
                count,
                theirs,
                step_id,
                run_id,
                mine,
                theirs,
                extra={"run_id": run_id, "step_id": step_id},
            )
        reason = f"step {step_id} belongs to cluster {theirs}, not {mine}"
        try:
            _hand_back(app)
        except Exception as exc:  # the broker is unreachable: requeue the original instead
            log.warning("could not hand step %s back to its queue (%s); requeueing it", step_id, exc)
            time.sleep(REFUSAL_PAUSE)
            return Reject(reason, requeue=True)
        time.sleep(REFUSAL_PAUSE)
        return Ignore(reason)


def _hand_back(app: Celery) -> None:
    """Publish a copy of the message being run (same task, id, arguments and queue)."""
    req = current_task.request
    delivery = req.delivery_info or {}
    app.send_task(
        req.task,
        args=req.args,
        kwargs=req.kwargs,
        task_id=req.id,
        queue=delivery.get("routing_key"),
        argsrepr=getattr(req, "argsrepr", None),
        kwargsrepr=getattr(req, "kwargsrepr", None),
        retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
    )


REFUSALS = Refusals()
