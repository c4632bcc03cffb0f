"""Step counts and latency histograms for /metrics without scanning every step on each scrape.

``metric_totals`` holds the sums over every *finished* run's steps (counts by kind and status;
per kind the count, sum and bucket counts of claim-to-commit latency and of queue wait), one row
per figure. A run adds its steps' figures in the transaction that ends it (``outcomes.finish_run``)
and takes them back in the one that re-opens it (``runs._reopen``) or before it is deleted
(``retention``): a finished run's steps do not change in between (a run succeeds with no step
open; any other end cancels its open steps in the same transaction). A scrape reads those rows
and adds the steps of the runs still running (``ix_steps_run_status``): its cost follows the
open work, not the history.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from swarm.constants import METRIC_BUCKETS
from swarm.domain.status import RunStatus
from swarm.store.tables import METRIC_TOTALS, RUNS, STEPS

Figures = dict[str, float]


def _bucket_name(series: str, kind: str, bound: float) -> str:
    return f"{series}:{kind}:le:{bound:g}"


def aggregate(conn: Connection, *where: Any) -> Figures:
    """The figures of the steps matching ``where``, in one grouped query."""
    s = STEPS.c
    duration, wait = s.finished_at - s.started_at, s.started_at - s.ready_at
    has_duration = s.finished_at.is_not(None) & s.started_at.is_not(None)
    has_wait = s.started_at.is_not(None) & s.ready_at.is_not(None)
    cols: list[Any] = [
        func.count(case((has_duration, 1))),
        func.coalesce(func.sum(case((has_duration, duration))), 0.0),
        func.count(case((has_wait, 1))),
        func.coalesce(func.sum(case((has_wait, wait))), 0.0),
    ]
    cols += [func.count(case((has_duration & (duration <= b), 1))) for b in METRIC_BUCKETS]
    cols += [func.count(case((has_wait & (wait <= b), 1))) for b in METRIC_BUCKETS]
    rows = conn.execute(select(s.kind, s.status, func.count(), *cols).where(*where).group_by(s.kind, s.status))
    out: Figures = defaultdict(float)
    n = len(METRIC_BUCKETS)
    for row in rows:
        kind, status, count = str(row[0]), str(row[1]), row[2]
        out[f"steps:{kind}:{status}"] += count
        out[f"duration:{kind}:count"] += row[3]
        out[f"duration:{kind}:sum"] += float(row[4])
        out[f"wait:{kind}:count"] += row[5]
        out[f"wait:{kind}:sum"] += float(row[6])
        for i, b in enumerate(METRIC_BUCKETS):
            out[_bucket_name("duration", kind, b)] += row[7 + i]
            out[_bucket_name("wait", kind, b)] += row[7 + n + i]
    return dict(out)


def count_run(conn: Connection, run_id: str, sign: int) -> None:
    """Add (``sign`` 1) or take back (-1) the figures of one finished run's steps."""
    figures = aggregate(conn, STEPS.c.run_id == run_id)
    if not figures:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(METRIC_TOTALS)
    # Sorted: concurrent run ends lock the rows in one order.
    rows = [{"name": k, "value": sign * v} for k, v in sorted(figures.items())]
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"], set_={"value": METRIC_TOTALS.c.value + stmt.excluded.value}
        ),
        rows,
    )


def snapshot(conn: Connection) -> Figures:
    """Every run's figures: the totals of finished runs plus the steps of running ones."""
    totals: Figures = defaultdict(float, {str(k): float(v) for k, v in conn.execute(select(METRIC_TOTALS))})
    running = select(RUNS.c.id).where(RUNS.c.status == RunStatus.RUNNING).scalar_subquery()
    for k, v in aggregate(conn, STEPS.c.run_id.in_(running)).items():
        totals[k] += v
    return dict(totals)


def histograms(figures: Figures, series: str) -> dict[str, dict[str, Any]]:
    """``series`` (duration, wait) per kind, as /metrics draws a histogram."""
    kinds = {k.split(":")[1] for k in figures if k.startswith(f"{series}:") and k.endswith(":count")}
    return {
        kind: {
            "count": int(figures[f"{series}:{kind}:count"]),
            "sum": figures.get(f"{series}:{kind}:sum", 0.0),
            "buckets": [int(figures.get(_bucket_name(series, kind, b), 0)) for b in METRIC_BUCKETS],
        }
        for kind in sorted(kinds)
        if figures[f"{series}:{kind}:count"] > 0
    }


def step_counts(figures: Figures) -> list[tuple[str, str, int]]:
    return [
        (k.split(":")[1], k.split(":")[2], int(v)) for k, v in sorted(figures.items()) if k.startswith("steps:") and v
    ]
