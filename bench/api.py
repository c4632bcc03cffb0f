"""The REST API under load, on this machine: a real `swarm serve` process (embedded runtime,
PostgreSQL), a real simulated model process, and this process as the client.

(1) submissions: ``POST /v1/runs`` throughput and latency (small runs, which then execute);
(2) reads under load: p50/p99 of ``GET /v1/runs/{id}`` while a W1 run executes;
(3) SSE fan-out: W1 wall time with 50 concurrent ``/events`` watchers against W1 alone (the
    ratio), and whether every watcher got every event.

W1 here is ``#sim agents=100 tools=15 tool=echo latency=0.2``: 1,500 tool calls, 1,603 LLM calls,
about 3,300 events. Alone and watched runs alternate, so drift on this shared 2-core machine
hits both alike. ``python -m bench.api`` writes
``bench/results/api.json`` and the benchmark table in ``docs/api.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import cpu_seconds, scratch_postgres, write_results
from swarm.store.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
DOCS = ROOT / "docs" / "api.md"
PG_ADMIN_URL = os.environ.get("SWARM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ID_LINE = re.compile(rb"^id: (\d+)$", re.MULTILINE)
W1 = "API bench W1. #sim agents={agents} tools={tools} tool=echo latency={latency}"
SMALL = "API bench submission {n}. #sim agents=1 tools=1 tool=echo latency=0"


def marks(mode: str) -> tuple[str, str]:
    name = "api" if mode == "embedded" else "api-cluster"
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


# --------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "p50_ms": round(1000 * pct(seconds, 0.5), 2),
        "p99_ms": round(1000 * pct(seconds, 0.99), 2),
        "mean_ms": round(1000 * statistics.fmean(seconds), 2),
        "max_ms": round(1000 * max(seconds), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], ready: Callable[[], bool], log: Path) -> Iterator[int]:
    with log.open("w") as out:
        # A session of its own: `swarm worker` starts celery children; the whole group stops together.
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    out.flush()
                    raise RuntimeError(f"{' '.join(args[2:4])} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield proc.pid
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


# --------------------------------------------------------------------------- the phases


class Bench:
    def __init__(self, url: str, key: str, server_pid: int, w1: str) -> None:
        self.url, self.key, self.server_pid, self.w1 = url, key, server_pid, w1
        self.http = httpx.Client(base_url=url, headers=self._auth(), timeout=60)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def summary(self, run_id: str) -> dict[str, Any]:
        for attempt in range(30):  # ride out a transient error of a server under load
            r = self.http.get(f"/v1/runs/{run_id}")
            if r.status_code == 200:
                return dict(r.json())
            print(f"GET /v1/runs/{run_id}: {r.status_code} {r.text[:200]}", file=sys.stderr)
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
        raise RuntimeError(f"the server keeps failing GET /v1/runs/{run_id}")

    def wait(self, run_id: str, poll: float = 0.5) -> dict[str, Any]:
        while (s := self.summary(run_id))["status"] == "running":
            time.sleep(poll)
        return s

    def drain(self) -> None:
        """Wait until no run is running (the server is idle again)."""
        while self.http.get("/v1/runs", params={"status": "running", "limit": 1}).json()["runs"]:
            time.sleep(0.5)

    def submissions(self, n: int, concurrency: int) -> dict[str, Any]:
        local = threading.local()
        latencies: list[float] = []

        def submit(i: int) -> None:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=self.url, headers=self._auth(), timeout=60)
            t0 = time.perf_counter()
            r = local.http.post("/v1/runs", json={"task": SMALL.format(n=i)})
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(submit, range(n)))
        elapsed = time.perf_counter() - t0
        self.drain()
        return {
            "n": n,
            "concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "per_second": round(n / elapsed, 1),
            "latency": latency_stats(latencies),
        }

    def submit_w1(self) -> str:
        limits = {"max_subagents": 200, "max_tool_calls": 3000}  # above W1's needs: no budget notes
        return str(self.http.post("/v1/runs", json={"task": self.w1, "limits": limits}).json()["id"])

    def w1_alone(self) -> dict[str, Any]:
        cpu0 = cpu_seconds(self.server_pid)
        run_id = self.submit_w1()
        s = self.wait(run_id)
        return {
            "run_id": run_id,
            "status": s["status"],
            "wall_seconds": s["wall_seconds"],
            "critical_steps": s["critical_steps"],
            "llm_calls": s["llm_calls"],
            "tool_calls": s["tool_calls"],
            "server_cpu_seconds": round(cpu_seconds(self.server_pid) - cpu0, 2),
        }

    def w1_polled(self, threads: int, think: float) -> dict[str, Any]:
        """W1 while ``threads`` clients GET its summary in a loop (``think`` s between requests)."""
        run_id = self.submit_w1()
        latencies: list[float] = []
        done = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=self.url, headers=self._auth(), timeout=60) as http:
                while not done.is_set():
                    t0 = time.perf_counter()
                    r = http.get(f"/v1/runs/{run_id}")
                    latencies.append(time.perf_counter() - t0)
                    if r.json()["status"] != "running":
                        done.set()
                    time.sleep(think)

        t0 = time.perf_counter()
        workers = [threading.Thread(target=poll, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        s = self.summary(run_id)
        return {
            "run_id": run_id,
            "status": s["status"],
            "wall_seconds": s["wall_seconds"],
            "pollers": threads,
            "think_seconds": think,
            "requests_per_second": round(len(latencies) / elapsed, 1),
            "latency": latency_stats(latencies),
        }

    def w1_watched(self, watchers: int) -> dict[str, Any]:
        """W1 with ``watchers`` SSE clients following it from its first event to its last."""
        cpu0, client0 = cpu_seconds(self.server_pid), time.process_time()
        run_id = self.submit_w1()
        counts = [0] * watchers
        reconnects = [0] * watchers

        def watch(i: int) -> None:
            # Find ids with one regex per received chunk (a batch of events): parsing every event
            # in this client process would steal CPU from the server measured on the same 2 cores.
            # A dropped connection is resumed with Last-Event-ID, as a real client does.
            last = 0
            with httpx.Client(base_url=self.url, headers=self._auth(), timeout=httpx.Timeout(60, read=120)) as http:
                for _ in range(20):
                    headers = {"Last-Event-ID": str(last)} if last else {}
                    try:
                        with http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as resp:
                            if resp.status_code != 200:  # e.g. 503 while the database restarts
                                raise httpx.HTTPStatusError("retry", request=resp.request, response=resp)
                            buf = b""
                            ended = False
                            for chunk in resp.iter_bytes():
                                buf += chunk
                                complete, _, buf = buf.rpartition(b"\n\n")
                                ids = [int(x) for x in ID_LINE.findall(complete)]
                                fresh = [x for x in ids if x > last]
                                counts[i] += len(fresh)
                                last = max(fresh, default=last)
                                ended = ended or b"event: end\n" in complete
                        if ended:
                            return
                        reconnects[i] += 1  # closed without `end`: resume, as a client must
                    except httpx.HTTPError:
                        reconnects[i] += 1
                        time.sleep(0.5)

        threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(watchers)]
        for t in threads:
            t.start()
        s = self.wait(run_id)
        for t in threads:
            t.join(60)
        expected = self.events_of(run_id)
        return {
            "run_id": run_id,
            "status": s["status"],
            "wall_seconds": s["wall_seconds"],
            "watchers": watchers,
            "events": expected,
            "events_received_min": min(counts),
            "events_received_max": max(counts),
            "reconnects": sum(reconnects),
            # The watchers share this machine's 2 cores with the run: their own cost counts too.
            "client_cpu_seconds": round(time.process_time() - client0, 2),
            "all_watchers_complete": all(c == expected for c in counts),
            "server_cpu_seconds": round(cpu_seconds(self.server_pid) - cpu0, 2),
        }

    def events_of(self, run_id: str) -> int:
        body = self.http.get(f"/v1/runs/{run_id}/events", params={"follow": "false"}).text
        return sum(1 for line in body.splitlines() if line.startswith("id: "))


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    w1 = W1.format(agents=args.agents, tools=args.tools, latency=args.latency)
    # Logs stay in the temporary directory unless the bench fails; then their tails are printed.
    with (
        tempfile.TemporaryDirectory(prefix="swarm-bench-api-") as tmp,
        scratch_postgres(PG_ADMIN_URL, "swarm_bench_api", migrate=True) as db_url,
    ):
        home = Path(tmp)
        try:
            return _run(args, w1, home, db_url)
        except BaseException:
            for log in sorted(home.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-4000:]}", file=sys.stderr)
            raise


def _run(args: argparse.Namespace, w1: str, home: Path, db_url: str) -> dict[str, Any]:
    store = StateStore.from_url(db_url)
    key = store.create_key("bench", "bench/api.py")[1]
    store.engine.dispose()
    sim_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "SWARM_HOME": str(home),
        "SWARM_DATABASE_URL": db_url,
        "SWARM_BROKER_URL": "",
        "SWARM_LLM_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
    }
    if args.mode == "cluster":
        env["SWARM_BROKER_URL"] = args.broker
        redis.Redis.from_url(args.broker).flushdb()
    swarm = [sys.executable, "-m", "swarm"]
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [*swarm, "sim-llm", "--port", str(sim_port), "--tool", "echo"],
                env,
                answers(f"http://127.0.0.1:{sim_port}/v1/models"),
                home / "sim.log",
            )
        )
        if args.mode == "cluster":
            # One node: llm + tool workers (each a sweeper candidate); the warm-up run waits for it.
            stack.enter_context(
                process([*swarm, "worker", "--loglevel", "WARNING"], env, lambda: True, home / "worker.log")
            )
        server_pid = stack.enter_context(
            process(
                [*swarm, "serve", "--port", str(api_port), "--log-level", "warning"],
                env,
                answers(f"http://127.0.0.1:{api_port}/readyz"),
                home / "api.log",
            )
        )
        b = Bench(f"http://127.0.0.1:{api_port}", key, server_pid, w1)
        b.wait(b.submit_w1())  # warm-up: connection pools, thread pools, PostgreSQL caches
        out: dict[str, Any] = {"submissions": b.submissions(args.submissions, args.concurrency)}
        print(f"submissions: {out['submissions']['per_second']}/s", file=sys.stderr)
        # Alone and watched alternate, so the drift of a shared machine hits both alike.
        alone, watched = [], []
        for _ in range(args.repeat):
            alone.append(b.w1_alone())
            watched.append(b.w1_watched(args.watchers))
            print(
                f"W1 alone {alone[-1]['wall_seconds']} s, with {args.watchers} watchers "
                f"{watched[-1]['wall_seconds']} s",
                file=sys.stderr,
            )
        polled = b.w1_polled(args.pollers, args.think)
        alone.append(b.w1_alone())
        base = statistics.fmean(a["wall_seconds"] for a in alone)
        base_cpu = statistics.fmean(a["server_cpu_seconds"] for a in alone)
        watched_wall = statistics.fmean(w["wall_seconds"] for w in watched)
        out.update(
            w1_alone=alone,
            w1_watched=watched,
            w1_polled=polled,
            fanout={
                "watchers": args.watchers,
                "baseline_wall_seconds": round(base, 3),
                "watched_wall_seconds": round(watched_wall, 3),
                "ratio": round(watched_wall / base, 3),
                "pair_ratios": [
                    round(w["wall_seconds"] / a["wall_seconds"], 3) for a, w in zip(alone, watched, strict=False)
                ],
                "all_watchers_complete": all(w["all_watchers_complete"] for w in watched),
                "events": watched[0]["events"],
                "extra_server_cpu_seconds": round(
                    statistics.fmean(w["server_cpu_seconds"] for w in watched) - base_cpu, 2
                ),
                "watchers_cpu_seconds": round(statistics.fmean(w["client_cpu_seconds"] for w in watched), 2),
            },
            get_latency={
                **polled["latency"],
                "requests_per_second": polled["requests_per_second"],
                "w1_wall_seconds": polled["wall_seconds"],
                "w1_slowdown": round(polled["wall_seconds"] / base, 3),
            },
        )
    runtime = "embedded (swarm serve)" if args.mode == "embedded" else "cluster (swarm serve + one swarm worker node)"
    out["config"] = {
        "w1": w1,
        "database": "postgresql",
        "runtime": runtime,
        "mode": args.mode,
        "submissions": args.submissions,
        "concurrency": args.concurrency,
        "watchers": args.watchers,
        "repeat": args.repeat,
        "pollers": args.pollers,
        "think_seconds": args.think,
    }
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return out


def markdown(r: dict[str, Any]) -> str:
    s, g, f = r["submissions"], r["get_latency"], r["fanout"]
    mode = r["config"].get("mode", "embedded")
    start, end = marks(mode)
    cmd = "python -m bench.api" + ("" if mode == "embedded" else " --mode cluster")
    return "\n".join(
        [
            start,
            f"Measured {r['date'][:10]} by `{cmd}` on this {r['machine']['cpus']}-core machine: "
            f"{r['config']['runtime']} on PostgreSQL, `swarm sim-llm` and the client as separate processes. "
            f"W1 = `{r['config']['w1'].split('. ', 1)[1]}`.",
            "",
            "| what | figure |",
            "|---|---|",
            f"| submissions (`POST /v1/runs`, {s['concurrency']} concurrent clients, {s['n']} runs) | "
            f"**{s['per_second']} /s**; latency p50 {s['latency']['p50_ms']} ms, p99 {s['latency']['p99_ms']} ms |",
            f"| `GET /v1/runs/{{id}}` during W1 ({r['config']['pollers']} pollers, {g['requests_per_second']} req/s) | "
            f"p50 **{g['p50_ms']} ms**, p99 **{g['p99_ms']} ms** (n = {g['n']}); W1 wall × {g['w1_slowdown']} |",
            f"| W1 alone (mean of {len(r['w1_alone'])}, alternating with the watched runs) | "
            f"{f['baseline_wall_seconds']} s |",
            f"| W1 with {f['watchers']} SSE watchers (mean of {len(r['w1_watched'])}) | "
            f"{f['watched_wall_seconds']} s: "
            f"ratio **{f['ratio']}** (pairs: {', '.join(map(str, f['pair_ratios']))}); every watcher got all "
            f"{f['events']} events: {f['all_watchers_complete']}; "
            f"server CPU +{f['extra_server_cpu_seconds']} s per run, "
            f"the 50 watchers' own CPU {f.get('watchers_cpu_seconds', '?')} s on the same cores |",
            end,
        ]
    )


def write_docs(r: dict[str, Any], path: Path = DOCS) -> None:
    start, end = marks(r["config"].get("mode", "embedded"))
    doc = path.read_text()
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + markdown(r) + rest.split(end, 1)[1]
        path.write_text(doc)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--tools", type=int, default=15)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--submissions", type=int, default=200, help="Runs submitted in the throughput phase.")
    p.add_argument("--concurrency", type=int, default=8, help="Concurrent submitting clients.")
    p.add_argument("--watchers", type=int, default=50)
    p.add_argument("--repeat", type=int, default=2, help="Alone/watched W1 pairs.")
    p.add_argument("--pollers", type=int, default=4)
    p.add_argument("--think", type=float, default=0.02, help="Seconds each poller waits between requests.")
    p.add_argument(
        "--mode",
        choices=["embedded", "cluster"],
        default="embedded",
        help="embedded: the server runs the steps; cluster: a `swarm worker` node does (needs Redis).",
    )
    p.add_argument("--broker", default="redis://127.0.0.1:6379/13", help="Redis for --mode cluster (flushed!).")
    p.add_argument(
        "--out", type=Path, default=None, help="Default: bench/results/api.json (api-cluster.json); '-' for none."
    )
    p.add_argument("--no-docs", action="store_true", help="Do not update the table in docs/api.md.")
    args = p.parse_args(argv)
    result = run(args)
    out = args.out or (RESULTS if args.mode == "embedded" else RESULTS.with_name("api-cluster.json"))
    write_results(out, result, lambda msg: print(msg, file=sys.stderr))
    if not args.no_docs:
        write_docs(result)
    print(json.dumps({k: result[k] for k in ("submissions", "get_latency", "fanout")}, indent=2))


if __name__ == "__main__":
    main()
