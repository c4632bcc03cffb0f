"""A tenant's quotas on submissions: runs running at once, runs per 24 hours. Pure decisions; the
store counts under a per-tenant lock, so concurrent submissions cannot overshoot together."""

from __future__ import annotations

from dataclasses import dataclass

from swarm.exceptions import QuotaExceeded

DAY = 86400.0
#: When a running run will end is unknown: a refused caller is told to try again after this.
RUNNING_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class TenantQuota:
    max_running: int = 0  #: 0: unlimited
    max_runs_per_day: int = 0  #: 0: unlimited

    @property
    def unlimited(self) -> bool:
        return not self.max_running and not self.max_runs_per_day


def check(quota: TenantQuota, tenant: str, running: int, last_day: list[float], now: float) -> None:
    """QuotaExceeded if one more run of ``tenant`` would pass a quota. ``last_day``: the creation
    times of its runs of the last 24 hours, oldest first."""
    if quota.max_running and running >= quota.max_running:
        raise QuotaExceeded(
            f"tenant {tenant!r} has {running} runs running, its quota: wait for one to end or cancel one",
            retry_after=RUNNING_RETRY_AFTER,
        )
    if quota.max_runs_per_day and len(last_day) >= quota.max_runs_per_day:
        frees_at = last_day[len(last_day) - quota.max_runs_per_day] + DAY
        raise QuotaExceeded(
            f"tenant {tenant!r} submitted {len(last_day)} runs in the last 24 hours, its quota",
            retry_after=max(1.0, frees_at - now),
        )
