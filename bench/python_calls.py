"""What one ``python`` tool call costs: in the bubblewrap sandbox against without isolation.

Each measurement is a fresh driver process that starts the tool's server, warms it up, then makes
``--calls`` calls of ``print(1)`` from ``--threads`` threads. The CPU counted is the machine's busy
time over the driver's life (the server, bubblewrap and every call's processes, which are reaped
inside the sandbox where getrusage cannot see them), minus a driver that makes no call — so run it
on a quiet machine. The two modes alternate ``--repeat`` times; the report gives per-call CPU and
wall for each and their ratio.

    python -m bench.python_calls --calls 300 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cluster import machine_busy_seconds
from bench.common import write_results

_DRIVER = """
import json, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from swarm.config import Settings
from swarm.tools.base import ToolContext
from swarm.tools.python_exec import PythonTool
mode, calls, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ws = Path(tempfile.mkdtemp())
ctx = ToolContext(run_id="r", agent_id="a", step_id="s", workspace=ws,
                  settings=Settings(_env_file=None, home=ws, python_isolation=mode))
tool = PythonTool()
assert tool.run({"code": "print(1)"}, ctx).content == "1"
t0 = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    outs = list(pool.map(lambda _: tool.run({"code": "print(1)"}, ctx).content, range(calls)))
wall = time.perf_counter() - t0
assert outs == ["1"] * calls, outs[:3]
print(json.dumps({"wall": wall}))
"""


def _children_cpu() -> float:
    # The sandbox's processes are reaped inside bubblewrap's PID namespace, and bubblewrap itself
    # does not wait for its whole tree, so getrusage(RUSAGE_CHILDREN) misses them: count the
    # machine's busy time instead (run this on a quiet machine).
    return machine_busy_seconds()


def measure(mode: str, calls: int, threads: int) -> dict[str, float]:
    before = _children_cpu()
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, mode, str(calls), str(threads)], capture_output=True, text=True, check=True
    )
    return {"cpu": _children_cpu() - before, "wall": json.loads(out.stdout)["wall"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench/results/python_calls.json"))
    args = p.parse_args(argv)
    rows: dict[str, list[dict[str, float]]] = {"bwrap": [], "off": []}
    for i in range(args.repeat):
        for mode in ("bwrap", "off"):
            base = measure(mode, 0, 1)
            full = measure(mode, args.calls, args.threads)
            row = {
                "cpu_ms_per_call": (full["cpu"] - base["cpu"]) * 1000 / args.calls,
                "wall_ms_per_call": full["wall"] * 1000 / args.calls,
            }
            rows[mode].append(row)
            print(
                f"pair {i + 1} {mode:5}: {row['cpu_ms_per_call']:.2f} ms CPU, {row['wall_ms_per_call']:.2f} ms wall "
                "per call",
                flush=True,
            )
    summary: dict[str, Any] = {
        mode: {k: statistics.median(r[k] for r in rs) for k in ("cpu_ms_per_call", "wall_ms_per_call")}
        for mode, rs in rows.items()
    }
    summary["cpu_ratio_bwrap_over_off"] = [
        b["cpu_ms_per_call"] / o["cpu_ms_per_call"] for b, o in zip(rows["bwrap"], rows["off"], strict=True)
    ]
    print(json.dumps(summary, indent=2))
    write_results(
        args.out,
        {"calls": args.calls, "threads": args.threads, "at": time.time(), "pairs": rows, "median": summary},
        print,
    )


if __name__ == "__main__":
    main()
