"""W10k: 1,000 subagents x 10 no-op tool calls at 1.0 s model latency, swarm vs a bare asyncio driver.

Issue 11's target: on default settings, swarm's wall <= 1.0 x the bare asyncio driver's (bench/floor.py,
the same 11,000+ calls with the same dependency structure) in the same run, and the peak memory of
the swarm process <= 300 MB. The simulated model runs as its own process (``python -m swarm.sim``);
swarm runs embedded (SQLite, as bench/w1.py) in a process of its own whose peak RSS is reported.
Calls in flight over time are sampled from the simulator's ``/sim/stats`` every second.

``python -m bench.w10k`` (add ``--agents 100`` for a quick look; ``--env SWARM_LLM_MAX_IN_FLIGHT=128``
to measure a setting; ``--skip-floor``). Results: bench/results/w10k.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import write_results

RESULTS = Path(__file__).parent / "results" / "w10k.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sim_process() -> Iterator[str]:
    """The simulated model in a process of its own; yields its OpenAI base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.sim", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{root}/sim/stats", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the simulated model did not start") from None
                time.sleep(0.2)
        yield f"{root}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class InFlight:
    """Samples the simulator's calls in flight once a second while a part runs."""

    def __init__(self, sim_url: str) -> None:
        self._stats = sim_url.removesuffix("/v1") + "/sim/stats"
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self._stop.wait(1.0):
                try:
                    self.samples.append(int(http.get(self._stats).json()["in_flight"]))
                except (httpx.HTTPError, KeyError, ValueError):
                    self.samples.append(-1)

    def __enter__(self) -> InFlight:
        httpx.post(self._stats.removesuffix("/stats") + "/reset", timeout=5.0)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        peak = httpx.get(self._stats, timeout=5.0).json()
        return {"peak": peak["peak_in_flight"], "served": peak["served"], "per_second": self.samples}


def run_swarm_here(sim_url: str, agents: int, tools: int, latency: float) -> dict[str, Any]:
    """W10k on the embedded default in this process (the child of :func:`swarm_process`)."""
    from bench.w1 import run_swarm

    res = run_swarm(sim_url, agents, tools, "echo", latency)
    return {
        "status": res.status,
        "wall_seconds": res.wall_seconds,
        "llm_calls": res.llm_calls,
        "tool_calls": res.tool_calls,
        "subagents": res.subagents,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def swarm_process(sim_url: str, a: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, **dict(kv.split("=", 1) for kv in a.env)}
    work = ["--agents", str(a.agents), "--tools", str(a.tools), "--latency", str(a.latency)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.w10k", "--child", "--sim-url", sim_url, *work],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_floor_here(sim_url: str, a: argparse.Namespace) -> dict[str, Any]:
    from bench.floor import run_floor

    res = asyncio.run(run_floor(sim_url, a.agents, a.tools, "echo", a.latency))
    return {"wall_seconds": round(res.wall_seconds, 3), "llm_calls": res.llm_calls, "tool_calls": res.tool_calls}


def run(a: argparse.Namespace, log: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "workload": {"agents": a.agents, "tools": a.tools, "tool": "echo", "latency": a.latency},
        "env": list(a.env),
        "loadavg": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with sim_process() as url:
        if not a.skip_floor:
            with InFlight(url) as flight:
                results["floor"] = run_floor_here(url, a)
            results["floor"]["in_flight"] = flight.summary()
            log(f"floor: {results['floor']['wall_seconds']:.1f} s")
        with InFlight(url) as flight:
            results["swarm"] = swarm_process(url, a)
        results["swarm"]["in_flight"] = flight.summary()
        log(f"swarm: {results['swarm']['wall_seconds']:.1f} s, peak RSS {results['swarm']['peak_rss_mb']} MB")
    if "floor" in results:
        results["ratio"] = round(results["swarm"]["wall_seconds"] / results["floor"]["wall_seconds"], 3)
        log(f"swarm / floor: {results['ratio']:.2f}x")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.w10k", description=__doc__.split("\n", 1)[0])
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--tools", type=int, default=10)
    p.add_argument("--latency", type=float, default=1.0)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the swarm process (repeatable)")
    p.add_argument("--skip-floor", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file ('-' for none)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sim-url", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(run_swarm_here(a.sim_url, a.agents, a.tools, a.latency)))
        return

    def log(msg: str) -> None:
        print(f"[w10k] {msg}", file=sys.stderr, flush=True)

    results = run(a, log)
    write_results(a.out, results, log)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
