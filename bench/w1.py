"""The embedded W1 benchmark: swarm (LocalRuntime, SQLite) against the floor, in ONE process run.

This machine is small (2 cores) and shared, so absolute seconds drift from run to run; ratios of
runs made back to back in the same process, against the same simulated model server, do not
drift nearly as much. Every figure the mission's targets are stated in is therefore a ratio
computed here, in one run:

(a)+(b) W1 with model latency (default 1.0 s) and the ``python`` tool, played by the floor
        (:mod:`bench.floor`) and by swarm embedded: ``wall / floor`` (target <= 1.15),
        ``wall / (critical_steps x latency)``, and the speed-up over one agent doing the same work
        serially, both as a step-count ratio and as a time estimate;
(c)     W1 with zero model latency and the ``echo`` tool, i.e. pure engine overhead: steps (LLM
        calls + tool calls) per second for both, and swarm's per-step costs read back from its
        own step rows (read-only SQL on the SQLite file).

``python -m bench.w1`` runs everything (a few minutes); ``--help`` lists the knobs to shrink it.
Results go to ``bench/results/w1.json`` (``--out``) and, with ``--json``, to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import tree_cpu_seconds, write_results
from bench.floor import FloorResult, budgets, run_floor, w1_task
from swarm.config import Settings
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim import SimConfig, SimServer
from swarm.store.types import RunSummary
from swarm.tools import sandbox
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool

RESULTS = Path(__file__).resolve().parent / "results" / "w1.json"


# --------------------------------------------------------------------------- measurement helpers


@dataclass
class Cpu:
    """CPU seconds spent while a block ran.

    Unlike wall time, CPU time hardly moves when other work shares the machine, so it is the
    steadier way to compare the two players: ``driver_seconds`` is what the floor or swarm itself
    burnt (this process minus the in-process model server's thread), ``children_seconds`` the
    python tool's processes (its sandbox servers and every call they ran).
    """

    self_seconds: float = 0.0
    sim_seconds: float = 0.0
    driver_seconds: float = 0.0
    children_seconds: float = 0.0


def _sim_thread_cpu() -> float:
    """CPU time of the in-process SimServer's thread (uvicorn runs the whole sim in it)."""
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith("swarm-sim-") and t.ident is not None:
            with contextlib.suppress(OSError):  # the thread ended after enumerate()
                total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return total


def _cpu_now() -> tuple[float, float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # The python tool's calls belong to its sandbox servers, still running: count their trees too.
    tools = kids.ru_utime + kids.ru_stime + sum(tree_cpu_seconds(pid) for pid in sandbox.running_server_pids())
    return me.ru_utime + me.ru_stime, _sim_thread_cpu(), tools


@contextmanager
def cpu_meter() -> Iterator[Cpu]:
    cpu = Cpu()
    s0, m0, c0 = _cpu_now()
    try:
        yield cpu
    finally:
        s1, m1, c1 = _cpu_now()
        cpu.self_seconds, cpu.sim_seconds = round(s1 - s0, 3), round(m1 - m0, 3)
        cpu.driver_seconds, cpu.children_seconds = round(cpu.self_seconds - cpu.sim_seconds, 3), round(c1 - c0, 3)


def _stats(values: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p95, max in milliseconds (inputs in seconds)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(values),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * p95, 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


# --------------------------------------------------------------------------- the two players


@dataclass(kw_only=True)
class SwarmResult:
    """One embedded swarm run of W1, with the same counters as :class:`bench.floor.FloorResult`."""

    status: str
    #: finished_at - started_at of the run row: submit to the orchestrator's final answer.
    wall_seconds: float
    #: Around submit() ... wait(): adds the wait loop's polling granularity (0.25 s).
    outer_wall_seconds: float
    llm_calls: int
    tool_calls: int
    critical_steps: int
    total_steps: int
    subagents: int
    result: str
    cpu: Cpu = field(default_factory=Cpu)
    #: Per-step timings read back from the step rows (see :func:`step_rows`).
    step_rows: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.llm_calls + self.tool_calls

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": self.steps}


def swarm_settings(sim_url: str, home: Path) -> Settings:
    """Swarm's defaults with the database in ``home`` and the given model endpoint; no .env."""
    return Settings(
        _env_file=None, home=home, database_url=f"sqlite:///{home / 'swarm.db'}", llm_base_url=sim_url, broker_url=""
    )


def _swarm_once(
    rt: LocalRuntime, s: Settings, *, agents: int, tools: int, tool: str, latency: float
) -> tuple[str, float, RunSummary]:
    max_subagents, max_tool_calls = budgets(agents, tools)
    spec = run_spec(
        s, w1_task(agents, tools, tool, latency), max_subagents=max_subagents, max_tool_calls=max_tool_calls
    )
    started = time.perf_counter()
    run_id = rt.submit(spec)
    # The CLI's poll interval: a tighter poll would add reads to the engine being measured, and
    # the headline wall comes from the run row's own timestamps, not from this loop.
    summary = rt.wait(run_id, timeout=3600, poll=0.25)
    return run_id, time.perf_counter() - started, summary


def run_swarm(sim_url: str, agents: int, tools: int, tool: str, latency: float) -> SwarmResult:
    """W1 on a fresh embedded runtime (SQLite in a temp dir), after a tiny warm-up run on it.

    The warm-up fills SQLAlchemy's per-engine statement cache and the connection pools, so the
    measured run pays no one-off start-up costs the floor does not pay either.
    """
    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp:
        home = Path(tmp)
        s = swarm_settings(sim_url, home)
        with LocalRuntime(s) as rt:
            _swarm_once(rt, s, agents=2, tools=1, tool=tool, latency=0.0)
            with cpu_meter() as cpu:
                run_id, outer, summary = _swarm_once(rt, s, agents=agents, tools=tools, tool=tool, latency=latency)
            rows = step_rows(home / "swarm.db", run_id)
            rt.store.engine.dispose()
    return SwarmResult(
        status=summary.status,
        wall_seconds=summary.wall_seconds,
        outer_wall_seconds=round(outer, 3),
        llm_calls=summary.llm_calls,
        tool_calls=summary.tool_calls,
        critical_steps=summary.critical_steps,
        total_steps=summary.total_steps,
        subagents=summary.subagents,
        result=summary.result or "",
        cpu=cpu,
        step_rows=rows,
    )


def step_rows(db_path: Path, run_id: str) -> dict[str, Any]:
    """Where a step's time goes, from swarm's own step rows (read-only; the DB is not touched).

    ``queue``: started_at - ready_at, from the commit that made the step ready to its claim
    (dispatch + thread-pool queue + claim transaction). ``exec``: finished_at - started_at, from
    the claim to the commit's first write (LLM: load context + HTTP call + plan; tool: workspace +
    tool + start of commit). assign_task steps are left out of ``exec``: they stay open for their
    subagent's whole life. ready_at comes from SQLite's clock (julianday, ms resolution), the
    others from time.time(), on the same host.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT kind, tool_name, ready_at, started_at, finished_at FROM steps "
            "WHERE run_id = ? AND started_at IS NOT NULL",
            (run_id,),
        ).fetchall()
        life = conn.execute(
            "SELECT finished_at - created_at FROM agents WHERE run_id = ? AND "
            "parent_id IS NOT NULL AND finished_at IS NOT NULL",
            (run_id,),
        ).fetchall()
        counts: dict[str, int] = {}
        for table in ("steps", "messages", "events", "agents"):
            counts[f"rows_{table}"] = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
    finally:
        conn.close()

    def group(row: tuple[Any, ...]) -> str:
        kind, name = row[0], row[1]
        if kind == "llm":
            return "llm"
        return name if name in ("create_subagent", "assign_task") else "tool"

    out: dict[str, Any] = {**counts, "subagent_lifetime": _stats([r[0] for r in life])}
    for g in ("llm", "tool", "create_subagent", "assign_task"):
        mine = [r for r in rows if group(r) == g]
        out[g] = {
            "queue": _stats([r[3] - r[2] for r in mine if r[2] is not None]),
            "exec": _stats([r[4] - r[3] for r in mine if r[4] is not None and g != "assign_task"]),
        }
    return out


def run_floor_sync(sim_url: str, agents: int, tools: int, tool: str, latency: float) -> tuple[FloorResult, Cpu]:
    # A tiny warm-up, as for swarm: the python tool's site-path scan, the HTTP client's imports.
    asyncio.run(run_floor(sim_url, 2, 1, tool, 0.0))
    with cpu_meter() as cpu:
        res = asyncio.run(run_floor(sim_url, agents, tools, tool, latency))
    return res, cpu


def serial_tool_seconds(tool: str, calls: int) -> dict[str, float]:
    """Mean seconds of one W1 tool call run alone (no contention), from ``calls`` calls.

    This is the tool time one agent working serially would pay per call.
    """
    if tool != "python" or calls <= 0:
        return {"calls": 0, "mean_seconds": 0.0}
    py = PythonTool()
    with tempfile.TemporaryDirectory(prefix="swarm-serial-") as tmp:
        ctx = ToolContext(
            run_id="serial", agent_id="serial", step_id="serial", workspace=Path(tmp), settings=Settings(_env_file=None)
        )
        py.run({"code": "print(0)"}, ctx)  # warm-up: site-path scan, page cache
        started = time.perf_counter()
        for i in range(calls):
            py.run({"code": f"print({1000 + i})"}, ctx)
        elapsed = time.perf_counter() - started
    return {"calls": calls, "mean_seconds": round(elapsed / calls, 5)}


# --------------------------------------------------------------------------- the benchmark


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def _same_work(pair: dict[str, Any]) -> bool:
    """Whether both players got the same final answer: the sim's summary digest hashes every
    subagent's report, which holds every tool result, so equal answers mean equal work."""
    return bool(pair["floor"]["result"]) and pair["floor"]["result"] == pair["swarm"]["result"]


def latency_section(sim_url: str, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """(a) + (b): the floor and swarm, alternated ``--repeat`` times, with the python tool."""
    serial = serial_tool_seconds(a.tool, a.serial_sample)
    log(f"serial {a.tool} tool call: {serial['mean_seconds'] * 1000:.1f} ms (mean of {serial['calls']})")
    pairs: list[dict[str, Any]] = []
    for i in range(a.repeat):
        pair: dict[str, Any] = {}
        if not a.skip_floor:
            floor, fcpu = run_floor_sync(sim_url, a.agents, a.tools, a.tool, a.latency)
            pair["floor"] = {**floor.as_dict(), "cpu": asdict(fcpu)}
            log(
                f"[{i + 1}/{a.repeat}] floor: {floor.wall_seconds:.2f} s wall, {floor.llm_calls} LLM calls, "
                f"{floor.tool_calls} tool calls, critical {floor.critical_steps}"
            )
        if not a.skip_swarm:
            sw = run_swarm(sim_url, a.agents, a.tools, a.tool, a.latency)
            pair["swarm"] = sw.as_dict()
            log(
                f"[{i + 1}/{a.repeat}] swarm: {sw.wall_seconds:.2f} s wall ({sw.status}), {sw.llm_calls} LLM calls, "
                f"{sw.tool_calls} tool calls, critical {sw.critical_steps}"
            )
        if "floor" in pair and "swarm" in pair:
            pair["wall_over_floor"] = round(pair["swarm"]["wall_seconds"] / pair["floor"]["wall_seconds"], 3)
            pair["same_result"] = _same_work(pair)
        pairs.append(pair)
    return {
        "config": {"agents": a.agents, "tools": a.tools, "tool": a.tool, "latency": a.latency, "repeat": a.repeat},
        "serial_tool": serial,
        "runs": pairs,
        "ratios": latency_ratios(pairs, a.latency, serial["mean_seconds"]),
    }


def latency_ratios(pairs: list[dict[str, Any]], latency: float, serial_tool: float) -> dict[str, Any]:
    """Medians over the repeats. Per-pair ratios are taken first: neighbours share the noise."""
    out: dict[str, Any] = {}
    pair_ratios = [p["wall_over_floor"] for p in pairs if "wall_over_floor" in p]
    if pair_ratios:
        out["wall_over_floor"] = _median(pair_ratios)
    for who in ("floor", "swarm"):
        runs = [p[who] for p in pairs if who in p]
        if not runs:
            continue
        wall = statistics.median(r["wall_seconds"] for r in runs)
        crit, total, tools = runs[0]["critical_steps"], runs[0]["total_steps"], runs[0]["tool_calls"]
        serial = total * latency + tools * serial_tool
        out[who] = {
            "wall_seconds": round(wall, 3),
            "critical_steps": crit,
            "total_steps": total,
            "tool_calls": tools,
            "wall_over_ideal": round(wall / (crit * latency), 3) if crit and latency else None,
            # What the swarm shape allows at best: every LLM step paid once, on one agent, vs
            # only the critical path. The time estimate adds the tool calls run one at a time.
            "speedup_steps": round(total / crit, 2) if crit else None,
            "serial_seconds_estimate": round(serial, 1),
            "speedup_time": round(serial / wall, 2) if wall else None,
            # CPU is the steadier figure on a shared machine (see Cpu).
            "driver_cpu_seconds": round(statistics.median(r["cpu"]["driver_seconds"] for r in runs), 3),
            "tool_cpu_seconds": round(statistics.median(r["cpu"]["children_seconds"] for r in runs), 3),
        }
    if "floor" in out and "swarm" in out and out["floor"]["driver_cpu_seconds"]:
        out["driver_cpu_over_floor"] = round(out["swarm"]["driver_cpu_seconds"] / out["floor"]["driver_cpu_seconds"], 2)
    return out


def _zero_floor(sim_url: str, agents: int, tools: int) -> dict[str, Any]:
    floor, cpu = run_floor_sync(sim_url, agents, tools, "echo", 0.0)
    return {
        **floor.as_dict(),
        "cpu": asdict(cpu),
        "driver_cpu_ms_per_step": round(1000 * cpu.driver_seconds / floor.steps, 3),
        "steps_per_second": round(floor.steps / floor.wall_seconds, 1),
        "llm_calls_per_second": round(floor.llm_calls / floor.wall_seconds, 1),
        "ms_per_step": round(1000 * floor.wall_seconds / floor.steps, 3),
        "llm_roundtrip_mean_ms": round(1000 * floor.llm_seconds / max(1, floor.llm_calls), 2),
    }


def _zero_swarm(sim_url: str, agents: int, tools: int) -> dict[str, Any]:
    sw = run_swarm(sim_url, agents, tools, "echo", 0.0)
    return {
        **sw.as_dict(),
        "driver_cpu_ms_per_step": round(1000 * sw.cpu.driver_seconds / sw.steps, 3),
        "steps_per_second": round(sw.steps / sw.wall_seconds, 1),
        "llm_calls_per_second": round(sw.llm_calls / sw.wall_seconds, 1),
        "ms_per_step": round(1000 * sw.wall_seconds / sw.steps, 3),
    }


def zero_section(sim_url: str, a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """(c): zero model latency, echo tool: what is left is the engine itself.

    Alternated ``--repeat`` times like the latency section; the headline is the run with the
    median wall of each player (its step-row figures come with it).
    """
    agents, tools = a.zero_agents or a.agents, a.zero_tools or a.tools
    runs: list[dict[str, Any]] = []
    for i in range(a.repeat):
        pair: dict[str, Any] = {}
        if not a.skip_floor:
            pair["floor"] = _zero_floor(sim_url, agents, tools)
            log(
                f"[{i + 1}/{a.repeat}] zero-latency floor: {pair['floor']['wall_seconds']:.2f} s, "
                f"{pair['floor']['steps_per_second']} steps/s"
            )
        if not a.skip_swarm:
            pair["swarm"] = _zero_swarm(sim_url, agents, tools)
            log(
                f"[{i + 1}/{a.repeat}] zero-latency swarm: {pair['swarm']['wall_seconds']:.2f} s "
                f"({pair['swarm']['status']}), {pair['swarm']['steps_per_second']} steps/s"
            )
        if "floor" in pair and "swarm" in pair:
            pair["same_result"] = _same_work(pair)
        runs.append(pair)
    out: dict[str, Any] = {
        "config": {"agents": agents, "tools": tools, "tool": "echo", "latency": 0.0, "repeat": a.repeat},
        "runs": runs,
    }
    for who in ("floor", "swarm"):
        mine = sorted((p[who] for p in runs if who in p), key=lambda r: r["wall_seconds"])
        if mine:
            out[who] = mine[(len(mine) - 1) // 2]
    if "floor" in out and "swarm" in out:
        out["ratios"] = {
            "steps_per_second_vs_floor": round(out["swarm"]["steps_per_second"] / out["floor"]["steps_per_second"], 3),
            "wall_over_floor": round(out["swarm"]["wall_seconds"] / out["floor"]["wall_seconds"], 3),
            # Mean extra wall per step, spread over the run's parallelism: not a per-step latency.
            "extra_ms_per_step": round(out["swarm"]["ms_per_step"] - out["floor"]["ms_per_step"], 3),
            "driver_cpu_per_step_vs_floor": round(
                out["swarm"]["driver_cpu_ms_per_step"] / max(1e-9, out["floor"]["driver_cpu_ms_per_step"]), 2
            ),
        }
    return out


def sim_idle_roundtrip_ms(sim_url: str, calls: int = 10) -> float:
    """Mean time of one small keep-alive request to the idle model server (GET /models).

    Recorded with every result because it is a fixed cost inside every LLM call of both players:
    a server whose responses wait on Nagle's algorithm shows it here at once (docs/benchmarks.md,
    "Measured design choices").
    """
    with httpx.Client(base_url=sim_url, timeout=10.0) as http:
        http.get("/models")
        started = time.perf_counter()
        for _ in range(calls):
            http.get("/models").raise_for_status()
        return round(1000 * (time.perf_counter() - started) / calls, 2)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent
            ).stdout
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    # Uncommitted engine changes make a figure unreproducible from the commit alone: list them.
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "swarm").splitlines()]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
        "swarm_uncommitted": dirty,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.w1", description=__doc__.split("\n", 1)[0])
    p.add_argument("--agents", type=int, default=100, help="subagents (W1: 100)")
    p.add_argument("--tools", type=int, default=15, help="tool calls per subagent (W1: 15)")
    p.add_argument("--tool", choices=("python", "echo"), default="python", help="tool of the latency section")
    p.add_argument("--latency", type=float, default=1.0, help="model seconds per call in the latency section")
    p.add_argument("--repeat", type=int, default=1, help="floor/swarm pairs per section (medians are reported)")
    p.add_argument(
        "--zero-agents", type=int, default=0, help="subagents of the zero-latency section (default --agents)"
    )
    p.add_argument("--zero-tools", type=int, default=0, help="tools per subagent there (default --tools)")
    p.add_argument(
        "--serial-sample",
        type=int,
        default=100,
        help="python calls run one at a time to price the serial baseline (0: skip)",
    )
    p.add_argument("--skip-floor", action="store_true")
    p.add_argument("--skip-swarm", action="store_true")
    p.add_argument("--skip-latency", action="store_true", help="skip (a)+(b)")
    p.add_argument("--skip-zero", action="store_true", help="skip (c)")
    p.add_argument("--sim-url", default="", help="use this model server (.../v1) instead of an in-process sim")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file ('-' for none)")
    p.add_argument("--json", action="store_true", help="print the results JSON to stdout")
    p.epilog = "python -m bench.w1 --render [FILE]: print a results file as Markdown tables"
    return p.parse_args(argv)


def run(a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "argv": sys.argv[1:]}
    with model_server(a.sim_url) as url:
        results["sim"] = {
            "server": "external " + url if a.sim_url else "in-process SimServer",
            "idle_roundtrip_ms": sim_idle_roundtrip_ms(url),
        }
        log(f"model server idle round trip: {results['sim']['idle_roundtrip_ms']} ms")
        if not a.skip_latency:
            results["latency"] = latency_section(url, a, log)
        if not a.skip_zero:
            results["zero_latency"] = zero_section(url, a, log)
    # Other work on the machine moves every figure; the load average says how much there was.
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


@contextmanager
def model_server(url: str) -> Iterator[str]:
    """The given model URL, or one in-process SimServer for the whole benchmark."""
    if url:
        yield url
        return
    with SimServer(SimConfig(port=0)) as sim:
        yield sim.url


def report(results: dict[str, Any]) -> str:
    """A short human summary of the headline figures."""
    lines = []
    lat = results.get("latency", {}).get("ratios", {})
    cfg = results.get("latency", {}).get("config", {})
    if lat:
        lines.append(f"W1 agents={cfg['agents']} tools={cfg['tools']} tool={cfg['tool']} latency={cfg['latency']:g}")
        if "wall_over_floor" in lat:
            lines.append(f"  swarm wall / floor wall            {lat['wall_over_floor']:.3f}   (target <= 1.15)")
        for who in ("floor", "swarm"):
            r = lat.get(who)
            if r:
                lines.append(
                    f"  {who:5s} wall {r['wall_seconds']:7.2f} s   / (critical x latency) "
                    f"{r['wall_over_ideal']}   speed-up vs serial: {r['speedup_time']}x time, "
                    f"{r['speedup_steps']}x steps"
                )
    zero = results.get("zero_latency", {})
    if zero:
        zc = zero["config"]
        lines.append(f"W1 agents={zc['agents']} tools={zc['tools']} tool=echo latency=0")
        for who in ("floor", "swarm"):
            r = zero.get(who)
            if r:
                lines.append(
                    f"  {who:5s} {r['wall_seconds']:7.2f} s  {r['steps_per_second']:7.1f} steps/s  "
                    f"{r['llm_calls_per_second']:6.1f} LLM calls/s  {r['ms_per_step']:.2f} ms wall/step"
                )
        sw = zero.get("swarm", {}).get("step_rows")
        if sw:
            for g in ("llm", "tool"):
                q, e = sw[g]["queue"], sw[g]["exec"]
                if q.get("n"):
                    lines.append(
                        f"  swarm {g:4s} steps: queue wait mean {q['mean_ms']} ms (p95 {q['p95_ms']}), "
                        f"exec mean {e['mean_ms']} ms (p95 {e['p95_ms']})"
                    )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The results as the Markdown tables of docs/benchmarks.md (so the doc is not retyped)."""
    out: list[str] = []
    lat = results.get("latency")
    if lat:
        c, r = lat["config"], lat["ratios"]
        out += [
            f"W1 with model latency {c['latency']:g} s and the `{c['tool']}` tool ({c['agents']} subagents x "
            f"{c['tools']} tool calls), median of {c['repeat']} alternated pair(s):",
            "",
            "| figure | floor | swarm embedded |",
            "|---|---|---|",
        ]
        f, sw = r.get("floor", {}), r.get("swarm", {})

        def cell(d: dict[str, Any], key: str, fmt: str) -> str:
            v = d.get(key)
            return "-" if v is None else format(v, fmt)

        out.append(f"| wall (s) | {cell(f, 'wall_seconds', '.2f')} | {cell(sw, 'wall_seconds', '.2f')} |")
        if "wall_over_floor" in r:
            out.append(f"| **wall / floor wall** (target <= 1.15) | 1 | **{r['wall_over_floor']:.3f}** |")
        out += [
            f"| wall / (critical steps x latency) | {cell(f, 'wall_over_ideal', '.3f')} | "
            f"{cell(sw, 'wall_over_ideal', '.3f')} |",
            f"| critical steps / total LLM steps | {f.get('critical_steps', '-')} / {f.get('total_steps', '-')} | "
            f"{sw.get('critical_steps', '-')} / {sw.get('total_steps', '-')} |",
            f"| speed-up vs one serial agent, step ratio (total / critical) | {cell(f, 'speedup_steps', '.1f')} | "
            f"{cell(sw, 'speedup_steps', '.1f')} |",
            f"| speed-up vs one serial agent, time estimate | {cell(f, 'speedup_time', '.1f')} | "
            f"{cell(sw, 'speedup_time', '.1f')} |",
            f"| CPU s of the driver itself (process minus model server) | {cell(f, 'driver_cpu_seconds', '.2f')} | "
            f"{cell(sw, 'driver_cpu_seconds', '.2f')} |",
            f"| CPU s of the python tool's subprocesses | {cell(f, 'tool_cpu_seconds', '.2f')} | "
            f"{cell(sw, 'tool_cpu_seconds', '.2f')} |",
            "",
        ]
        walls = [
            (p.get("floor", {}).get("wall_seconds"), p.get("swarm", {}).get("wall_seconds"), p.get("wall_over_floor"))
            for p in lat["runs"]
        ]
        out.append(
            "Pairs (floor s, swarm s, ratio): "
            + "; ".join(
                f"{fw:.2f}, {sw_:.2f}, {ratio:.3f}"
                for fw, sw_, ratio in walls
                if fw is not None and sw_ is not None and ratio is not None
            )
            + "."
        )
        out.append("")
    zero = results.get("zero_latency")
    if zero and ("floor" in zero or "swarm" in zero):
        c = zero["config"]
        out += [
            f"W1 with zero model latency and the `echo` tool ({c['agents']} x {c['tools']}), median-wall run "
            f"of {c['repeat']}:",
            "",
            "| figure | floor | swarm embedded |",
            "|---|---|---|",
        ]
        f, sw = zero.get("floor", {}), zero.get("swarm", {})
        for label, key, fmt in (
            ("wall (s)", "wall_seconds", ".2f"),
            ("steps (LLM + tool calls) per second", "steps_per_second", ".1f"),
            ("LLM calls per second", "llm_calls_per_second", ".1f"),
            ("wall per step (ms)", "ms_per_step", ".2f"),
            ("driver CPU per step (ms; model server excluded)", "driver_cpu_ms_per_step", ".2f"),
        ):
            fv, sv = f.get(key), sw.get(key)
            out.append(
                f"| {label} | {'-' if fv is None else format(fv, fmt)} | {'-' if sv is None else format(sv, fmt)} |"
            )
        rows = sw.get("step_rows")
        if rows:
            out += [
                "",
                "swarm's own step rows, same run (ms; mean / p95):",
                "",
                "| step kind | n | queue wait: ready -> claimed | exec: claimed -> result written |",
                "|---|---|---|---|",
            ]
            for g in ("llm", "tool", "assign_task"):
                q, e = rows[g]["queue"], rows[g]["exec"]
                if q.get("n"):
                    ex = f"{e['mean_ms']} / {e['p95_ms']}" if e.get("n") else "(open while its subagent runs)"
                    out.append(f"| {g} | {q['n']} | {q['mean_ms']} / {q['p95_ms']} | {ex} |")
            life = rows.get("subagent_lifetime", {})
            if life.get("n"):
                out.append(f"| subagent lifetime | {life['n']} | | {life['mean_ms']} / {life['p95_ms']} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--render":
        # `python -m bench.w1 --render [results.json]`: Markdown tables of a finished run.
        print(markdown(json.loads(Path(argv[1] if len(argv) > 1 else RESULTS).read_text())))
        return
    a = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run(a, log)
    write_results(a.out, results, log)
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))


if __name__ == "__main__":
    main()
