"""What the benchmarks share: scratch PostgreSQL databases, process CPU, writing results."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text


@contextmanager
def scratch_postgres(admin_url: str, prefix: str, *, migrate: bool = False) -> Iterator[str]:
    """A new database next to ``admin_url``'s (at head if ``migrate``), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        if migrate:
            from swarm.store.migrate import upgrade

            eng = create_engine(url)
            upgrade(eng)
            eng.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of the children it has reaped, from /proc (Linux)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())


def _stat_cpu(fields: list[str]) -> float:
    """CPU seconds from the fields after the command name of /proc/<pid>/stat: utime, stime,
    cutime, cstime (what the process and its reaped children used)."""
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def write_results(path: Path, results: dict[str, Any], log: Callable[[str], None]) -> None:
    """Write atomically (a reader never sees half a file); ``-`` writes nothing."""
    if str(path) == "-":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    log(f"results written to {path}")


def process_table() -> dict[int, tuple[int, str, float]]:
    """Every live process: pid → (parent pid, command line, CPU seconds including reaped
    children). Taken before and after a run, :func:`cpu_by_group` says where the CPU went."""
    out: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        head, tail = stat.rsplit(")", 1)
        fields = tail.split()
        out[int(entry.name)] = (int(fields[1]), cmd or head.split("(", 1)[1], _stat_cpu(fields))
    return out


def cpu_by_group(
    before: dict[int, tuple[int, str, float]],
    after: dict[int, tuple[int, str, float]],
    group: Callable[[int, dict[int, tuple[int, str, float]]], str],
) -> dict[str, float]:
    """CPU seconds spent between two :func:`process_table` snapshots, summed by ``group(pid,
    table)``. A process that started and ended in between counts only through its reaper."""
    totals: dict[str, float] = {}
    for pid, (_, _, cpu) in after.items():
        prev = before.get(pid)
        spent = cpu - prev[2] if prev is not None and prev[1] == after[pid][1] else cpu
        name = group(pid, after)
        totals[name] = round(totals.get(name, 0.0) + spent, 2)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (each including the children it reaped):
    the python sandbox's calls are reaped inside bubblewrap, below the process swarm started."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][2]
            todo.extend(children.get(pid, ()))
    return total
