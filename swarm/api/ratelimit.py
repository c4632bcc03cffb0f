"""Per-key request rate limits (SWARM_API_RATE_PER_MINUTE), counted by the ``limits`` library.

With a broker configured the counters live in that Redis, so every API process of a deployment
shares one budget per key; otherwise in this process. A moving window: a key gets at most N
requests in any 60 seconds. If Redis cannot be reached, requests are let through (logged):
a rate limit must not turn a broker outage into an API outage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from swarm.config import Settings

log = logging.getLogger(__name__)


class KeyRateLimit:
    def __init__(self, settings: Settings) -> None:
        self.per_minute = settings.api_rate_per_minute
        self._item = RateLimitItemPerMinute(max(1, self.per_minute), namespace="swarm-api-key")
        uri = settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else "memory://"
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri)) if self.per_minute else None

    def retry_after(self, key_id: str) -> float | None:
        """Count one request of ``key_id``: None if it is within the limit, else the seconds until
        the key may ask again."""
        if self._limiter is None:
            return None
        try:
            if self._limiter.hit(self._item, key_id):
                return None
            reset = self._limiter.get_window_stats(self._item, key_id).reset_time
        except Exception as exc:  # the storage (Redis) failed: fail open, loudly
            log.warning("rate limit not applied: %s: %s", type(exc).__name__, exc)
            return None
        return max(1.0, math.ceil(reset - time.time()))
