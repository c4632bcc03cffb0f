"""W1 against a provider capped like Kimi tier 1: the simulator answers 429 beyond ``--cap``
concurrent requests (``swarm sim-llm --max-concurrency``), swarm is told the cap
(``SWARM_PROVIDER_CONCURRENCY``) and must keep under it.

Modes (each on a fresh database; Redis flushed for the cluster ones):

embedded-unset  embedded default, no provider limits: each process adapts on its own (the before)
embedded        embedded default with SWARM_PROVIDER_CONCURRENCY=cap (in-process capacity)
cluster1/2      one or two worker nodes sharing the capacity in Redis

Reported per mode: 429 answers as % of requests (target <= 2 %), and wall over the cap-bound
ideal, max(critical steps, calls / cap) x latency (target <= 1.10).

``python -m bench.capacity --modes embedded,cluster1`` (needs PostgreSQL and Redis for the
cluster modes). Results: printed, and ``bench/results/capacity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from bench.common import scratch_postgres, write_results
from swarm.config import Settings
from swarm.dispatch.celery import CeleryDispatcher
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim import SimConfig, SimServer
from swarm.sim.capacity import SimLimits
from swarm.store.store import StateStore
from swarm.store.types import RunSummary
from tests.acceptance.cluster import Cluster, w1_task, wait_done

RESULTS = Path(__file__).resolve().parent / "results" / "capacity.json"
MODES = ("embedded-unset", "embedded", "cluster1", "cluster2")


def budgets(agents: int, tools: int) -> tuple[int, int]:
    return max(100, 2 * agents), max(1500, 2 * agents * tools)


def spec(s: Settings, a: argparse.Namespace) -> Any:
    subs, calls = budgets(a.agents, a.tools)
    task = w1_task(a.agents, a.tools, tool=a.tool, latency=a.latency)
    return run_spec(s, task, max_subagents=subs, max_tool_calls=calls)


def embedded(sim: SimServer, a: argparse.Namespace, limited: bool) -> RunSummary:
    with tempfile.TemporaryDirectory(prefix="swarm-cap-bench-") as tmp:
        extra: dict[str, Any] = {"provider_concurrency": a.cap} if limited else {}
        s = Settings(
            _env_file=None,
            home=Path(tmp),
            database_url=f"sqlite:///{tmp}/swarm.db",
            llm_base_url=sim.url,
            broker_url="",
            **extra,
        )
        with LocalRuntime(s) as rt:
            sim.reset()
            run_id = rt.submit(spec(s, a))
            summary: RunSummary = rt.wait(run_id, timeout=3600, poll=0.25)
            rt.store.engine.dispose()
        return summary


def cluster(sim: SimServer, a: argparse.Namespace, nodes: int, root: Path) -> RunSummary:
    client = redis.Redis.from_url(a.redis_url)
    client.flushdb()
    client.close()
    with scratch_postgres(a.pg_admin_url, "swarm_capbench", migrate=True) as url:
        s = Settings(_env_file=None, home=root, database_url=url, broker_url=a.redis_url, llm_base_url=sim.url)
        store = StateStore.from_url(url, pool_size=4)
        dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
        c = Cluster.for_settings(root / f"n{nodes}", s, SWARM_PROVIDER_CONCURRENCY=str(a.cap))
        try:
            for i in range(nodes):
                c.start_node(f"n{i}", llm_concurrency=max(100 // nodes + 8, 16))
            time.sleep(a.warmup)
            sim.reset()
            run_id, refs = store.create_run(spec(s, a))
            dispatcher.dispatch(refs)
            return wait_done(store, run_id, 3600, c)
        finally:
            c.close()
            dispatcher.close()
            store.engine.dispose()


def measure(mode: str, sim: SimServer, a: argparse.Namespace, root: Path) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    if mode.startswith("embedded"):
        summary = embedded(sim, a, limited=mode == "embedded")
    else:
        summary = cluster(sim, a, int(mode[-1]), root)
    stats = sim.stats()
    ideal = max(summary.critical_steps, summary.llm_calls / a.cap) * a.latency
    requests = stats["served"] + stats["throttled"]
    return {
        "status": summary.status,
        "wall_seconds": summary.wall_seconds,
        "llm_calls": summary.llm_calls,
        "critical_steps": summary.critical_steps,
        "cap_bound_ideal_seconds": round(ideal, 2),
        "wall_over_ideal": round(summary.wall_seconds / ideal, 3),
        "requests": requests,
        "answered_429": stats["throttled"],
        "pct_429": round(100.0 * stats["throttled"] / max(requests, 1), 2),
        "sim_peak_in_flight": stats["peak_in_flight"],
        "duplicates": stats["duplicates"],
        "loadavg_1m_before": round(load0, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n", 1)[0])
    p.add_argument("--modes", default="embedded-unset,embedded,cluster1,cluster2")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--tools", type=int, default=15)
    p.add_argument("--tool", default="echo")
    p.add_argument("--latency", type=float, default=1.0)
    p.add_argument("--cap", type=int, default=50)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds for the workers to start")
    p.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    unknown = set(a.modes.split(",")) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    return a


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    results: dict[str, Any] = {"params": {k: v for k, v in vars(a).items() if k not in ("out", "pg_admin_url")}}
    root = Path(tempfile.mkdtemp(prefix="swarm-cap-bench-"))
    with SimServer(SimConfig(port=0, limits=SimLimits(max_concurrency=a.cap))) as sim:
        for mode in a.modes.split(","):
            results[mode] = measure(mode, sim, a, root)
            print(mode, json.dumps(results[mode]), flush=True)
    write_results(a.out, results, print)


if __name__ == "__main__":
    main()
