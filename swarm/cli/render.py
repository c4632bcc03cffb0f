"""How runs look in a terminal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from swarm.store.types import RunSummary

if TYPE_CHECKING:
    from rich.console import Group

STATUS_STYLE = {
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "ready": "cyan",
    "waiting": "blue",
    "awaiting_approval": "magenta",
    "pending": "magenta",
    "approved": "green",
    "rejected": "red",
    "interrupted": "red",
}


def styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def usd_text(cost: float | None) -> str:
    """A cost for people: ``$0.0123``; ``unknown`` when a model had no price (never a made-up 0)."""
    return "unknown" if cost is None else f"${cost:,.4f}"


def tokens_text(tokens_in: int, tokens_out: int, tokens_cached: int) -> str:
    return f"{tokens_in} in ({tokens_cached} cached) / {tokens_out} out"


def summary_table(s: RunSummary) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    speedup = f"{s.total_steps / s.critical_steps:.1f}×" if s.critical_steps else "-"
    rows: list[tuple[str, Any]] = [
        ("run", s.id),
        ("status", styled(s.state or s.status)),
        ("task", s.task[:200]),
        ("subagents", f"{s.subagents} / {s.max_subagents}"),
        ("tool calls", f"{s.tool_calls} / {s.max_tool_calls}"),
        ("llm calls", s.llm_calls),
        ("critical steps", s.critical_steps),
        ("total steps", s.total_steps),
        ("parallel speed-up", f"{speedup} (total / critical steps)"),
        ("wall", f"{s.wall_seconds:.1f} s"),
        ("tokens", tokens_text(s.tokens_in, s.tokens_out, s.tokens_cached)),
        ("cost", usd_text(s.cost_usd) + (f" of {usd_text(s.max_usd)} cap" if s.max_usd is not None else "")),
    ]
    if s.max_tokens is not None:
        rows.append(("token cap", f"{s.tokens_in + s.tokens_out} of {s.max_tokens}"))
    if s.approve_tools:
        rows.append(("needs approval", ", ".join(s.approve_tools) + "  (swarm approvals)"))
    if s.forked_from_run_id:
        rows.append(("forked from", f"{s.forked_from_run_id} at step {s.forked_at_step_id}"))
    if s.forks:
        rows.append(("forks", ", ".join(s.forks)))
    if s.reason:
        rows.append(("reason", Text(s.reason, style="red")))
    if s.hint:
        rows.append(("hint", Text(s.hint, style="yellow")))
    if s.result:
        rows.append(("result", s.result[:2000]))
    for k, v in rows:
        t.add_row(k, v if isinstance(v, Text) else str(v))
    return t


def agent_tree(agents: list[dict[str, Any]], limit: int = 60) -> Tree:
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for a in agents:
        by_parent.setdefault(a["parent_id"], []).append(a)
    root = Tree("agents")

    def label(a: dict[str, Any]) -> Text:
        t = Text(f"{a['name']} ", style="bold")
        t.append_text(styled(a["status"]))
        t.append(f"  steps {a['steps']}  tools {a['tool_calls']}  tokens {a['tokens_in']}/{a['tokens_out']}")
        t.append(f"  {usd_text(a.get('cost_usd'))}")
        if a.get("reason"):
            t.append(f"  {a['reason'][:80]}", style="red")
        return t

    shown = 0

    def add(node: Tree, parent: str | None) -> None:
        nonlocal shown
        kids = by_parent.get(parent, [])
        for a in kids:
            if shown >= limit:
                node.add(Text(f"… {len(agents) - shown} more", style="dim"))
                return
            shown += 1
            add(node.add(label(a)), a["id"])

    add(root, None)
    return root


class RunProgress:
    """Live bars for a running swarm: subagents and tool calls against their limits."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[extra]}")
        )
        self.subs = self.progress.add_task("subagents", total=1, extra="")
        self.tools = self.progress.add_task("tool calls", total=1, extra="")
        self.llm = self.progress.add_task("llm calls", total=None, extra="")
        self.started = time.monotonic()

    def update(self, s: RunSummary, counts: dict[str, int]) -> None:
        done = sum(n for st, n in counts.items() if st != "running") - (0 if s.status == "running" else 1)
        self.progress.update(
            self.subs, completed=max(0, done), total=max(s.max_subagents, 1), extra=f"{s.subagents} launched"
        )
        self.progress.update(self.tools, completed=s.tool_calls, total=max(s.max_tool_calls, 1), extra="")
        self.progress.update(
            self.llm,
            completed=s.llm_calls,
            extra=f"critical steps {s.critical_steps}  tokens {s.tokens_in + s.tokens_out}  {usd_text(s.cost_usd)}  "
            f"{time.monotonic() - self.started:.0f}s",
        )

    def renderable(self) -> Group:
        from rich.console import Group

        return Group(self.progress)
