"""A run's live state, folded from its event stream — what ``swarm watch`` draws.

The fold is idempotent where it matters (an agent's steps are ``max(steps, turn + 1)``), so it
can start from a snapshot or replay the stream from the first event. Only the summary (limits,
start time) and, after a resume, the agent tree are read directly: the view is driven by events,
not by polling the database.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from swarm.cli.render import styled, tokens_text, usd_text
from swarm.domain.critical import AgentSteps, critical_steps
from swarm.domain.events import EventType
from swarm.domain.status import RUN_TERMINAL
from swarm.store.types import RunSummary


@dataclass
class AgentView:
    id: str
    name: str
    parent_id: str | None
    status: str = "running"
    steps: int = 0
    tools: int = 0
    parent_turn: int | None = None
    reason: str | None = None


class LiveRun:
    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        self.status: str = summary.status
        self.agents: dict[str, AgentView] = {}
        self.last_turn: dict[str, int] = {}
        self.tool_calls = 0
        self.tool_errors = 0
        self.failures = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.tokens_cached = 0
        #: USD so far; None once a call's cost is unknown (a model without a price).
        self.cost_usd: float | None = 0.0
        self.last_event_id = 0
        #: Tool calls waiting for a human decision: step id → tool.
        self.awaiting: dict[str, str] = {}
        self.needs_tree = False
        #: The model provider's capacity, one line (``swarm watch`` refreshes it); "" if no limits.
        self.provider, self.provider_at = "", 0.0
        self._synced_at = time.monotonic()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ fold

    def apply(self, e: dict[str, Any]) -> None:
        with self._lock:
            self._apply(e)

    def _apply(self, e: dict[str, Any]) -> None:
        if e["id"] <= self.last_event_id:
            return
        self.last_event_id = e["id"]
        kind, agent_id, data = e["type"], e.get("agent_id"), e.get("data") or {}
        if kind == EventType.RUN_CREATED and agent_id:
            self.agents.setdefault(agent_id, AgentView(agent_id, "orchestrator", None))
        elif kind == EventType.AGENT_STARTED and agent_id:
            parent = data.get("parent_id")
            self.agents.setdefault(
                agent_id,
                AgentView(agent_id, str(data.get("name", "?")), parent, parent_turn=self.last_turn.get(parent or "")),
            )
        elif kind == EventType.LLM_DONE and agent_id:
            turn = int(data.get("turn", 0))
            a = self._agent(agent_id)
            a.steps = max(a.steps, turn + 1)
            self.last_turn[agent_id] = max(turn, self.last_turn.get(agent_id, -1))
            self.tokens_in += int(data.get("tokens_in", 0))
            self.tokens_out += int(data.get("tokens_out", 0))
            self.tokens_cached += int(data.get("tokens_cached", 0))
            cost = data.get("cost_usd")
            self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + float(cost)
            # The run's tool_calls: calls the turn granted (docs/architecture.md, "Counts").
            granted = int(data.get("tools_granted", 0))
            a.tools += granted
            self.tool_calls += granted
        elif kind == EventType.TOOL_DONE and agent_id:
            self.tool_errors += bool(data.get("error"))
        elif kind == EventType.STEP_FAILED:
            self.failures += 1
        elif kind == EventType.APPROVAL_REQUESTED and e.get("step_id"):
            self.awaiting[e["step_id"]] = str(data.get("tool", "?"))
        elif kind == EventType.APPROVAL_DECIDED:
            self.awaiting.pop(e.get("step_id") or "", None)
        elif kind == EventType.AGENT_DONE and agent_id:
            a = self._agent(agent_id)
            a.status, a.reason = str(data.get("status", a.status)), data.get("reason")
        elif kind == EventType.RUN_DONE:
            self.status = str(data.get("status", self.status))
            # The store ends still-running agents in the same transaction, without an event each.
            ended = "cancelled" if self.status == "cancelled" else "failed"
            for a in self.agents.values():
                if a.status == "running":
                    a.status, a.reason = ended, data.get("reason")
        elif kind == EventType.RUN_RESUMED:
            self.status = "running"
            self.needs_tree = True  # which agents re-opened is decided in the store: ask it

    def merge_tree(self, tree: list[dict[str, Any]]) -> None:
        with self._lock:
            self._merge_tree(tree)

    def _merge_tree(self, tree: list[dict[str, Any]]) -> None:
        for row in tree:
            a = self._agent(row["id"], name=row["name"], parent_id=row["parent_id"])
            a.status, a.reason = row["status"], row.get("reason")
            a.steps = max(a.steps, int(row["steps"]))
            a.parent_turn = row.get("parent_turn")
        self.needs_tree = False

    def sync(self, summary: RunSummary) -> None:
        with self._lock:
            self.summary, self._synced_at = summary, time.monotonic()
            self.status = summary.state or summary.status  # "interrupted" if nothing works on it

    def _agent(self, agent_id: str, name: str = "?", parent_id: str | None = None) -> AgentView:
        if agent_id not in self.agents:
            self.agents[agent_id] = AgentView(agent_id, name, parent_id)
        return self.agents[agent_id]

    # --------------------------------------------------------------- figures

    @property
    def critical_steps(self) -> int:
        return critical_steps(AgentSteps(a.id, a.parent_id, a.parent_turn, a.steps) for a in self.agents.values())

    @property
    def elapsed(self) -> float:
        if self.summary.status in RUN_TERMINAL and self.status in RUN_TERMINAL:
            return self.summary.wall_seconds
        return self.summary.wall_seconds + (time.monotonic() - self._synced_at)

    @property
    def subagents(self) -> list[AgentView]:
        return [a for a in self.agents.values() if a.parent_id is not None]

    # ---------------------------------------------------------------- render

    def render(self, max_rows: int = 25) -> RenderableType:
        # Called from rich's refresh thread while events are folded in on the main thread.
        with self._lock:
            return self._render(max_rows)

    def _render(self, max_rows: int) -> RenderableType:
        s = self.summary
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("run", f"{s.id}  {s.task[:70]!r}")
        head.add_row("status", styled(self.status))
        head.add_row("elapsed", f"{self.elapsed:.1f} s")
        total = sum(a.steps for a in self.agents.values())
        head.add_row("critical steps", f"{self.critical_steps}  (total steps {total})")
        head.add_row("tokens", tokens_text(self.tokens_in, self.tokens_out, self.tokens_cached))
        head.add_row("cost", usd_text(self.cost_usd))
        if self.awaiting and self.status == "running":
            step, tool = next(iter(self.awaiting.items()))
            head.add_row(
                "approvals",
                Text(f"{len(self.awaiting)} awaiting (e.g. {tool}): swarm approve {step[:12]}", style="magenta"),
            )
        if self.provider:
            head.add_row("provider", self.provider)
        subs = self.subagents
        done = sum(1 for a in subs if a.status != "running")
        bars = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            auto_refresh=False,
        )
        bars.add_task("subagents launched", total=max(s.max_subagents, 1), completed=len(subs), extra="")
        bars.add_task(
            "subagents done", total=max(len(subs), 1), completed=done, extra=_counts(Counter(a.status for a in subs))
        )
        bars.add_task(
            "tool calls",
            total=max(s.max_tool_calls, 1),
            completed=self.tool_calls,
            extra=f"{self.tool_errors} errors" if self.tool_errors else "",
        )
        return Group(head, bars, self._agent_table(max_rows))

    def _agent_table(self, max_rows: int) -> Table:
        t = Table("agent", "status", "steps", "tools", "note", box=None, pad_edge=False, header_style="dim")
        agents = list(self.agents.values())
        # Running agents first: they are what a watcher wants to see; then the most recent others.
        rows = sorted(agents, key=lambda a: (a.parent_id is not None, a.status != "running"))[:max_rows]
        for a in rows:
            indent = "  " if a.parent_id else ""
            t.add_row(
                f"{indent}{a.name} [dim]{a.id[:8]}[/]",
                styled(a.status),
                str(a.steps),
                str(a.tools),
                Text((a.reason or "")[:60], style="red"),
            )
        if len(agents) > len(rows):
            t.add_row(f"[dim]… {len(agents) - len(rows)} more[/]", "", "", "", "")
        return t


def _counts(c: Counter[str]) -> str:
    return "  ".join(f"{k} {v}" for k, v in sorted(c.items()))
