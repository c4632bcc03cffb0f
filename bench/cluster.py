"""The cluster benchmark: swarm on Celery + Redis + PostgreSQL, every process on this machine.

Sections (each on a fresh database and a flushed Redis database):

latency    W1 (100 x 15, ``python`` tool by default) with 1.0 s model latency: wall and
           wall / (critical_steps x latency); the floor (:mod:`bench.floor`, a bare asyncio
           driver) plays the same W1 against the same model server in the same run, giving
           wall / floor. ``--repeat`` (3) alternated pairs; the median pair is the headline.
scaleout   throughput with 1, 2 and 4 LLM worker processes of a fixed small thread count each,
           on latency-bound work, so per-process concurrency is what limits (target: 4 >= 3.6x 1).
zero       W1 with a zero-latency model and the ``echo`` tool: steps per second, and where a
           step's time goes: queue wait (claimed − ready, from the step rows), claim, read,
           work, commit and publish (from the workers' ``SWARM_STEP_TIMINGS`` log).
recovery   SIGKILL of one of two worker nodes mid-run, with default lease and sweep settings:
           fault → next commit, and fault → every step the dead node held committed elsewhere.

``python -m bench.cluster`` runs everything (~6 min on 2 cores); ``--sections zero,recovery``
picks some. Needs PostgreSQL (``--pg-admin-url``) and Redis (``--redis-url``; its database is
flushed). Results: printed table, and ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/cluster.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from sqlalchemy import func, select

from bench.common import cpu_by_group, process_table, scratch_postgres, write_results
from swarm.config import Settings
from swarm.dispatch.celery import CeleryDispatcher
from swarm.domain.status import StepKind
from swarm.runtime import run_spec
from swarm.sim import SimConfig, SimServer
from swarm.store.models import Step
from swarm.store.store import StateStore
from tests.acceptance.cluster import (
    Cluster,
    first_commit_after,
    steps_owned_by,
    w1_task,
    wait_done,
    wait_progress,
    wait_steps_done,
)

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
SECTIONS = ("latency", "scaleout", "zero", "recovery")
Log = Callable[[str], None]


# --------------------------------------------------------------------------- environment


class Bench:
    """Services shared by all sections: the admin Postgres URL, Redis, one in-process sim."""

    def __init__(self, a: argparse.Namespace, sim: SimServer, log: Log) -> None:
        self.a, self.sim, self.log = a, sim, log
        self.root = Path(tempfile.mkdtemp(prefix="swarm-cluster-bench-"))

    @contextmanager
    def cluster(self, name: str, **extra_env: str) -> Iterator[tuple[Cluster, StateStore, CeleryDispatcher, Settings]]:
        client = redis.Redis.from_url(self.a.redis_url)
        client.flushdb()
        client.close()
        with scratch_postgres(self.a.pg_admin_url, "swarm_bench", migrate=True) as url:
            s = Settings(
                _env_file=None,
                home=self.root / name,
                database_url=url,
                broker_url=self.a.redis_url,
                llm_base_url=self.sim.url,
            )
            store = StateStore.from_url(url, pool_size=4)
            dispatcher = CeleryDispatcher.from_settings(s, store.cluster_id)
            c = Cluster.for_settings(self.root / name, s, **extra_env)
            try:
                yield c, store, dispatcher, s
            finally:
                c.close()
                dispatcher.close()
                store.engine.dispose()

    def submit(
        self,
        store: StateStore,
        dispatcher: CeleryDispatcher,
        s: Settings,
        agents: int,
        tools: int,
        tool: str,
        latency: float,
    ) -> str:
        subs, calls = budgets(agents, tools)
        run_id, refs = store.create_run(
            run_spec(s, w1_task(agents, tools, tool=tool, latency=latency), max_subagents=subs, max_tool_calls=calls)
        )
        dispatcher.dispatch(refs)
        return run_id


def budgets(agents: int, tools: int) -> tuple[int, int]:
    """The floor's budgets, so both send byte-identical prompts (bench.floor explains why)."""
    try:
        from bench.floor import budgets as floor_budgets
    except ImportError:
        return max(100, 2 * agents), max(1500, 2 * agents * tools)
    return floor_budgets(agents, tools)


def step_rows(store: StateStore, run_id: str) -> list[Any]:
    with store.read() as conn:
        return list(
            conn.execute(
                select(Step.kind, Step.tool_name, Step.ready_at, Step.started_at, Step.finished_at).where(
                    Step.run_id == run_id
                )
            ).all()
        )


def _ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "mean_ms": round(1000 * statistics.fmean(values), 2),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


# --------------------------------------------------------------------------- sections


def latency_section(b: Bench) -> dict[str, Any]:
    """``--repeat`` alternated pairs (cluster W1, then the floor's), each cluster run on a fresh
    database and fresh workers; the headline figures are the median pair's."""
    a = b.a
    out: dict[str, Any] = {
        "config": {
            "agents": a.agents,
            "tools": a.tools,
            "tool": a.tool,
            "latency": a.latency,
            "nodes": a.nodes,
            "llm_concurrency": max(100 // a.nodes + 8, 16),
            "tool_concurrency": a.tool_concurrency,
            "repeat": a.repeat,
        },
        "pairs": [],
    }
    for i in range(a.repeat):
        pair: dict[str, Any] = {"swarm": _cluster_w1(b, f"latency{i}")}
        floor = run_floor_wall(b.sim.url, a.agents, a.tools, a.tool, a.latency)
        if floor is not None:
            pair["floor"] = floor
            pair["wall_over_floor"] = round(pair["swarm"]["wall_seconds"] / floor["wall_seconds"], 3)
            b.log(
                f"latency [{i + 1}/{a.repeat}]: floor {floor['wall_seconds']:.1f} s → cluster/floor "
                f"{pair['wall_over_floor']} (machine CPU {pair['swarm']['machine_cpu_ms_per_step']} ms per "
                "step)"
            )
        out["pairs"].append(pair)
    ratios = sorted(out["pairs"], key=lambda p: p.get("wall_over_floor", p["swarm"]["wall_seconds"]))
    median = ratios[len(ratios) // 2]
    out["swarm"] = median["swarm"]
    if "floor" in median:
        out["floor"], out["wall_over_floor"] = median["floor"], median["wall_over_floor"]
    else:
        out["floor"] = None
        out["floor_note"] = "bench/floor.py not found: wall/floor not measured (hook: run_floor_wall)"
    return out


def _cluster_w1(b: Bench, name: str) -> dict[str, Any]:
    a = b.a
    with b.cluster(name) as (c, store, dispatcher, s):
        for i in range(a.nodes):
            c.start_node(f"n{i}", llm_concurrency=max(100 // a.nodes + 8, 16), tool_concurrency=a.tool_concurrency)
        time.sleep(a.warmup)
        t0, busy0, procs0 = time.time(), machine_busy_seconds(), process_table()
        run_id = b.submit(store, dispatcher, s, a.agents, a.tools, a.tool, a.latency)
        summary = wait_done(store, run_id, 1800, c)
        end_to_end, busy = time.time() - t0, machine_busy_seconds() - busy0
        by_process = cpu_by_group(procs0, process_table(), process_group)
        with store.read() as conn:
            steps = conn.execute(select(func.count()).select_from(Step).where(Step.run_id == run_id)).scalar_one()
    ideal = summary.critical_steps * a.latency
    res = {
        "status": summary.status,
        "wall_seconds": summary.wall_seconds,
        "submit_to_done_seconds": round(end_to_end, 2),
        "critical_steps": summary.critical_steps,
        "llm_calls": summary.llm_calls,
        "tool_calls": summary.tool_calls,
        "wall_over_ideal": round(summary.wall_seconds / ideal, 3),
        # Every process on the machine (workers, Postgres, Redis, the sim, python children):
        # the cluster is CPU-bound on 2 cores, and this is the budget it competes for.
        "machine_cpu_seconds": round(busy, 1),
        "steps": steps,
        "machine_cpu_ms_per_step": round(1000 * busy / max(steps, 1), 2),
        "cpu_ms_per_step_by_process": {
            k: round(1000 * v / max(steps, 1), 2) for k, v in by_process.items() if v >= 0.05
        },
    }
    b.log(f"latency: cluster W1 {summary.wall_seconds:.1f} s, wall/(critical x latency) {res['wall_over_ideal']}")
    return res


def process_group(pid: int, table: dict[int, tuple[int, str, float]]) -> str:
    """Which part of the cluster a process is, for the CPU breakdown."""
    ppid, cmd, _ = table[pid]
    if pid == os.getpid():
        return "bench process (the sim, submitting, polling)"
    if cmd.startswith(("postgres", "/usr/lib/postgresql")):
        return "postgres"
    if cmd.startswith("redis-server"):
        return "redis"
    if " -I -S -B -c " in cmd:
        return "python fork servers and their tool calls"
    if "celery" in cmd and " worker " in cmd:
        queue = cmd.split(" -Q ", 1)[1].split()[0] if " -Q " in cmd else "?"
        child = ppid in table and table[ppid][1] == cmd
        return f"worker {queue}" + (" pool children" if child else "")
    return "other"


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_floor_wall(sim_url: str, agents: int, tools: int, tool: str, latency: float) -> dict[str, Any] | None:
    """The floor's W1 (bench/floor.py), or None when that module is not there."""
    try:
        from bench.floor import run_floor
    except ImportError:
        return None
    asyncio.run(run_floor(sim_url, 2, 1, tool, 0.0))  # warm-up, as the cluster's workers had
    res = asyncio.run(run_floor(sim_url, agents, tools, tool, latency))
    return {
        "wall_seconds": round(res.wall_seconds, 3),
        "critical_steps": res.critical_steps,
        "llm_calls": res.llm_calls,
        "tool_calls": res.tool_calls,
    }


def steady_throughput(rows: Sequence[Any]) -> dict[str, Any]:
    """LLM steps/s and steps/s over the middle 80 % of the run (ramp-up and the final summary turn
    excluded: they are the same fixed cost for every worker count and would mask scaling)."""
    ends = sorted(r.finished_at for r in rows if r.finished_at)
    lo, hi = ends[len(ends) // 10], ends[(9 * len(ends)) // 10]
    window = [r for r in rows if r.finished_at and lo <= r.finished_at <= hi]
    span = max(hi - lo, 1e-9)
    llm = sum(1 for r in window if r.kind == StepKind.LLM)
    return {
        "window_seconds": round(span, 2),
        "llm_steps_per_second": round(llm / span, 2),
        "steps_per_second": round(len(window) / span, 2),
    }


def scaleout_section(b: Bench) -> dict[str, Any]:
    a = b.a
    cfg = {
        "agents": a.scale_agents,
        "tools": a.scale_tools,
        "latency": a.scale_latency,
        "threads_per_process": a.scale_threads,
        "processes": a.scale_processes,
    }
    out: dict[str, Any] = {"config": cfg, "runs": []}
    for n in a.scale_processes:
        with b.cluster(f"scale{n}") as (c, store, dispatcher, s):
            for i in range(n):
                c.start_node(f"p{i}", queues=("llm",), llm_concurrency=a.scale_threads)
            # Tool steps (echo) get ample capacity of their own: only LLM processes vary.
            c.start_node("tools", queues=("tool",), tool_concurrency=4)
            time.sleep(a.warmup)
            run_id = b.submit(store, dispatcher, s, a.scale_agents, a.scale_tools, "echo", a.scale_latency)
            summary = wait_done(store, run_id, 1800, c)
            tp = steady_throughput(step_rows(store, run_id))
        tp.update(
            {
                "processes": n,
                "wall_seconds": summary.wall_seconds,
                "status": summary.status,
                "capacity_llm_steps_per_second": round(n * a.scale_threads / a.scale_latency, 2),
            }
        )
        out["runs"].append(tp)
        b.log(
            f"scaleout: {n} process(es) x {a.scale_threads} threads: {tp['llm_steps_per_second']} LLM steps/s "
            f"(capacity {tp['capacity_llm_steps_per_second']}), wall {summary.wall_seconds:.1f} s"
        )
    base = out["runs"][0]["llm_steps_per_second"]
    for r in out["runs"]:
        r["speedup"] = round(r["llm_steps_per_second"] / base, 2)
    return out


def zero_section(b: Bench) -> dict[str, Any]:
    a = b.a
    timings = b.root / "step-timings.jsonl"
    out: dict[str, Any] = {
        "config": {"agents": a.agents, "tools": a.tools, "tool": "echo", "latency": 0.0, "nodes": a.nodes}
    }
    with b.cluster("zero", SWARM_STEP_TIMINGS=str(timings)) as (c, store, dispatcher, s):
        for i in range(a.nodes):
            c.start_node(f"n{i}", llm_concurrency=max(100 // a.nodes + 8, 16), tool_concurrency=a.tool_concurrency)
        time.sleep(a.warmup)
        run_id = b.submit(store, dispatcher, s, a.agents, a.tools, "echo", 0.0)
        summary = wait_done(store, run_id, 1800, c)
        rows = step_rows(store, run_id)
    steps = summary.llm_calls + summary.tool_calls
    out["swarm"] = {
        "status": summary.status,
        "wall_seconds": summary.wall_seconds,
        "steps": steps,
        "steps_per_second": round(steps / summary.wall_seconds, 1),
        "all_steps_per_second": round(len(rows) / summary.wall_seconds, 1),
    }
    lines = [json.loads(x) for x in timings.read_text().splitlines()] if timings.exists() else []
    claimed = [x for x in lines if x.get("claimed")]
    breakdown: dict[str, Any] = {}
    for kind in ("llm", "tool"):
        mine = [r for r in rows if r.kind == kind and r.started_at and r.ready_at]
        t = [x for x in claimed if x.get("kind") == kind]
        phases = ("claim", "read", "work", "commit", "publish", "total")
        breakdown[kind] = {
            "queue_wait": _ms([r.started_at - r.ready_at for r in mine]),
            **{p: _ms([x[p] for x in t]) for p in phases},
            # CPU of the step's own thread (time.thread_time) in the same phases.
            "cpu": {p: _ms([x["cpu"][p] for x in t if "cpu" in x]) for p in phases},
        }
    out["per_step"] = breakdown
    out["duplicate_deliveries"] = len(lines) - len(claimed)
    b.log(f"zero: {steps} steps in {summary.wall_seconds:.1f} s = {out['swarm']['steps_per_second']} steps/s")
    return out


def recovery_section(b: Bench) -> dict[str, Any]:
    a = b.a
    agents, tools = 40, 10
    out: dict[str, Any] = {"config": {"agents": agents, "tools": tools, "latency": 0.05, "nodes": 2}}
    with b.cluster("recovery") as (c, store, dispatcher, s):
        out["config"].update(
            lease_seconds=s.lease_seconds, heartbeat_seconds=s.heartbeat_seconds, sweep_interval=s.sweep_interval
        )
        victim = c.start_node("a", llm_concurrency=32)
        c.start_node("b", llm_concurrency=32)
        time.sleep(a.warmup)
        run_id = b.submit(store, dispatcher, s, agents, tools, "echo", 0.05)
        wait_progress(store, run_id, (4 + agents * (2 * tools + 2)) // 4)
        tree = [pid for p in victim for pid in p.tree()]
        while not steps_owned_by(store, run_id, tree):
            time.sleep(0.02)
        for p in victim:
            os.kill(p.pid, signal.SIGKILL)
        t_fault = time.time()
        orphans = steps_owned_by(store, run_id, tree)
        resume = first_commit_after(store, run_id, t_fault)
        recovered = wait_steps_done(store, orphans, t_fault)
        summary = wait_done(store, run_id, 600, c)
    out.update(
        {
            "status": summary.status,
            "orphaned_steps": len(orphans),
            "resume_seconds": round(resume, 2),
            "orphans_recovered_seconds": round(recovered, 2),
            "target_seconds": 15.0,
        }
    )
    b.log(
        f"recovery: next commit {resume:.2f} s after kill -9; {len(orphans)} orphaned steps recommitted "
        f"after {recovered:.2f} s"
    )
    return out


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if lat := r.get("latency"):
        cfg = lat["config"]
        sw = lat["swarm"]
        rows.append(
            (
                f"W1 {cfg['agents']}x{cfg['tools']} {cfg['tool']}, latency {cfg['latency']:g} s: wall",
                f"{sw['wall_seconds']:.1f} s",
            )
        )
        rows.append(
            (
                "  wall / (critical_steps x latency)",
                f"{sw['wall_over_ideal']:.3f}  ({sw['critical_steps']} critical steps)",
            )
        )
        if "machine_cpu_seconds" in sw:
            rows.append(
                (
                    "  machine CPU during the run",
                    f"{sw['machine_cpu_seconds']:.1f} s = {sw['machine_cpu_ms_per_step']:.1f} ms per step",
                )
            )
        for group, ms in sw.get("cpu_ms_per_step_by_process", {}).items():
            rows.append((f"    {group}", f"{ms:.2f} ms per step"))
        if lat.get("floor"):
            rows.append(
                (
                    "  floor wall / cluster wall / floor (median pair)",
                    f"{lat['floor']['wall_seconds']:.1f} s / {lat['wall_over_floor']:.3f}",
                )
            )
            rows.append(
                (
                    "  all pairs: cluster/floor",
                    ", ".join(f"{p['wall_over_floor']:.3f}" for p in lat.get("pairs", []) if "wall_over_floor" in p),
                )
            )
            rows.append(
                (
                    "  all pairs: machine CPU ms per step",
                    ", ".join(f"{p['swarm']['machine_cpu_ms_per_step']:.1f}" for p in lat.get("pairs", [])),
                )
            )
        else:
            rows.append(("  wall / floor", "not measured (bench/floor.py missing)"))
    if sc := r.get("scaleout"):
        cfg = sc["config"]
        for run in sc["runs"]:
            rows.append(
                (
                    f"scale-out: {run['processes']} LLM process(es) x {cfg['threads_per_process']} threads, "
                    f"latency {cfg['latency']:g} s",
                    f"{run['llm_steps_per_second']:.1f} LLM steps/s ({run['speedup']:.2f}x; capacity "
                    f"{run['capacity_llm_steps_per_second']:.1f})",
                )
            )
    if z := r.get("zero"):
        sw = z["swarm"]
        rows.append(
            (
                f"zero latency, echo, W1 {z['config']['agents']}x{z['config']['tools']}",
                f"{sw['steps_per_second']:.1f} steps/s (LLM + tool calls; {sw['all_steps_per_second']:.1f} "
                f"incl. orchestration) in {sw['wall_seconds']:.1f} s",
            )
        )
        for kind, ph in z["per_step"].items():
            parts = ", ".join(
                f"{p} {ph[p].get('mean_ms', 0):.1f}"
                for p in ("queue_wait", "claim", "read", "work", "commit", "publish")
            )
            rows.append((f"  {kind} step mean ms", parts))
            cpu = ", ".join(
                f"{p} {ph['cpu'][p].get('mean_ms', 0):.1f}" for p in ("claim", "read", "work", "commit", "publish")
            )
            rows.append((f"  {kind} step mean CPU ms (step thread)", cpu))
    if rec := r.get("recovery"):
        rows.append(("kill -9 of 1 of 2 nodes: next commit after", f"{rec['resume_seconds']:.2f} s"))
        rows.append(
            (
                f"  {rec['orphaned_steps']} orphaned steps recommitted after",
                f"{rec['orphans_recovered_seconds']:.2f} s (target <= 15 s)",
            )
        )
    width = max(len(k) for k, _ in rows) if rows else 0
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n", 1)[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--tools", type=int, default=15)
    p.add_argument("--tool", choices=("python", "echo"), default="python", help="tool of the latency section")
    p.add_argument("--latency", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3, help="alternated cluster/floor pairs of the latency section")
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="worker nodes (llm + tool worker each) for latency/zero; 1 is what `swarm worker` runs on "
        "one machine, 2 or more emulate that many machines on these cores",
    )
    p.add_argument("--tool-concurrency", type=int, default=4, help="prefork processes per node's tool worker")
    p.add_argument("--scale-processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4])
    p.add_argument("--scale-threads", type=int, default=2, help="threads per LLM worker process (scale-out)")
    p.add_argument("--scale-latency", type=float, default=0.5)
    p.add_argument("--scale-agents", type=int, default=32)
    p.add_argument("--scale-tools", type=int, default=4)
    p.add_argument("--warmup", type=float, default=4.0, help="seconds for workers to start before submitting")
    p.add_argument(
        "--pg-admin-url",
        default=os.environ.get("SWARM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/6", help="flushed before each section")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file ('-' for none)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    wanted = [x.strip() for x in a.sections.split(",") if x.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # SIGTERM must unwind like Ctrl-C, so every cluster process and database is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"machine": machine(), "argv": sys.argv[1:]}
    runners = {
        "latency": latency_section,
        "scaleout": scaleout_section,
        "zero": zero_section,
        "recovery": recovery_section,
    }
    with SimServer(SimConfig(port=0)) as sim:
        b = Bench(a, sim, log)
        for name in wanted:
            log(f"== {name}")
            results[name] = runners[name](b)
    print(table(results))
    write_results(a.out, results, log)


if __name__ == "__main__":
    main()
