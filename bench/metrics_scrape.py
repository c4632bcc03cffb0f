"""What a /metrics scrape costs on a database with many finished steps: the maintained totals
(``store/step_stats.py``) against the full scan of every step the scrape used to run.

    python -m bench.metrics_scrape --runs 200 --steps 2500 --db sqlite     # prints one JSON object
    python -m bench.metrics_scrape --db postgres --url postgresql+psycopg://postgres@127.0.0.1/scrape

The database is filled with synthetic finished runs (bulk inserts, nothing executes), their
totals are counted as their ends would have, and one run is left running with open steps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from swarm.store import step_stats
from swarm.store.migrate import upgrade
from swarm.store.models import RUNS, STEPS
from swarm.store.store import StateStore


def _fill(store: StateStore, runs: int, steps: int) -> None:
    rng = random.Random(7)
    now = time.time()
    for r in range(runs + 1):
        run_id = uuid.uuid4().hex
        running = r == runs
        base = dict(task="bench", model="m", max_subagents=1, max_tool_calls=1, max_steps_per_agent=1)
        with store.session.tx() as conn:
            conn.execute(
                insert(RUNS).values(
                    id=run_id,
                    status="running" if running else "succeeded",
                    max_wall_seconds=1.0,
                    max_depth=1,
                    created_at=now,
                    **base,
                )
            )
            rows = []
            for i in range(steps):
                ready = now - rng.random() * 1000
                started = ready + rng.random() * 0.05
                kind = "llm" if i % 2 else "tool"
                rows.append(
                    dict(
                        id=uuid.uuid4().hex,
                        run_id=run_id,
                        agent_id=run_id,
                        kind=kind,
                        turn=i,
                        idx=0,
                        status="ready" if running and i % 10 == 0 else "succeeded",
                        attempt=1,
                        fence=1,
                        ready_at=ready,
                        started_at=started,
                        finished_at=started + rng.random() * (5 if kind == "llm" else 0.2),
                    )
                )
            conn.execute(insert(STEPS), rows)
            if not running:
                step_stats.count_run(conn, run_id, 1)


def _time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2500, help="steps per run")
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--url", default="", help="an empty database (postgres)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'scrape.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    store = StateStore.from_url(url)  # (steps.agent_id is no foreign key: no agent rows needed)
    t0 = time.perf_counter()
    _fill(store, args.runs, args.steps)
    fill = time.perf_counter() - t0
    with store.session.tx() as conn:
        if args.db == "postgres":
            conn.execute(text("ANALYZE"))

    def scan() -> None:
        with store.session.read() as conn:
            step_stats.aggregate(conn)

    result = {
        "db": args.db,
        "finished_steps": args.runs * args.steps,
        "running_run_steps": args.steps,
        "fill_seconds": round(fill, 1),
        "scrape_seconds_totals": round(_time(store.metrics_snapshot, args.repeat), 4),
        "scrape_seconds_full_scan": round(_time(scan, args.repeat), 4),
    }
    print(json.dumps(result))
    store.engine.dispose()


if __name__ == "__main__":
    main()
