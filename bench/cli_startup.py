"""How long `swarm ls` and `swarm show` take from process start to exit, against an embedded
SQLite home (what a user waits for at each command), and which imports cost the most.

    python -m bench.cli_startup                # median of 10 runs each; prints one JSON object
    python -m bench.cli_startup --repeat 20 --top 15

The home gets one run (created in the database, not executed) for `show` to read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _env(home: Path) -> dict[str, str]:
    # Bytecode caches as an installed package has them (PYTHONDONTWRITEBYTECODE would make every
    # run compile swarm's modules from source); the warm-up run writes them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "SWARM_HOME": str(home), "SWARM_DATABASE_URL": "", "SWARM_API_URL": "", "SWARM_BROKER_URL": ""}


def _timed(cmd: list[str], env: dict[str, str], repeat: int) -> dict[str, float]:
    """Wall time, and CPU time (user + system) of the command: on a loaded machine the CPU time
    is the steadier figure."""
    times, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "cpu_median_s": round(statistics.median(cpu), 3),
    }


def _importtime(cmd: list[str], env: dict[str, str], top: int) -> dict[str, Any]:
    """`python -X importtime`: the modules with the largest cumulative time among the first
    levels of the tree, and the total."""
    cmd = [sys.executable, "-X", "importtime", *cmd[1:]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    rows = []  # (depth, module, cumulative µs)
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header
        name = parts[2]
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(parts[1])))
    top_level = sum(cum for depth, _, cum in rows if depth == 0)
    shallow = sorted((r for r in rows if r[0] <= 2), key=lambda r: -r[2])[:top]
    return {
        # The steadiest figure on a busy machine: how many modules the command imports.
        "modules_imported": len(rows),
        "imports_total_s": round(top_level / 1e6, 3),
        "top_cumulative": [{"module": m, "depth": d, "cumulative_ms": round(c / 1e3, 1)} for d, m, c in shallow],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="swarm-startup-"))
    env = _env(home)
    swarm = [sys.executable, "-m", "swarm"]
    # The first command creates the database; then one run to show.
    subprocess.run([*swarm, "ls", "--json"], env=env, check=True, capture_output=True)
    from swarm.config import Settings
    from swarm.runtime import open_store, run_spec

    settings = Settings(_env_file=None, home=home, database_url="", broker_url="", api_url="")  # type: ignore[call-arg]
    store = open_store(settings)
    run_id, _ = store.create_run(run_spec(settings, "bench"))
    store.engine.dispose()
    result = {
        "python": sys.version.split()[0],
        "repeat": args.repeat,
        "ls": _timed([*swarm, "ls", "--json"], env, args.repeat),
        "show": _timed([*swarm, "show", run_id[:8], "--json"], env, args.repeat),
        "python_bare": _timed([sys.executable, "-c", "pass"], env, args.repeat),
        # What any command reading the database must import: the floor of `ls` and `show`.
        "floor_sqlalchemy_orm_pydantic_settings": _timed(
            [sys.executable, "-c", "import sqlalchemy.orm, pydantic_settings"], env, args.repeat
        ),
        "ls_importtime": _importtime([*swarm, "ls", "--json"], env, args.top),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
