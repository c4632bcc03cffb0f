"""The floor: W1 played by a bare asyncio driver with no persistence and no queue.

It is the yardstick of the mission's orchestration-efficiency target (swarm's wall <= 1.15 x this
driver's wall, same workload, same model server, same tools, same machine, same run). To be a
*fair* floor it must do all the work swarm does that is not orchestration overhead, and nothing
else:

* the same HTTP wire format against the same simulated model: ``POST /chat/completions`` with
  ``model``, ``messages`` (assistant tool-call messages carry their ``reasoning_content``, as Kimi
  requires), ``stream``, ``tools`` schemas and Kimi's fixed ``temperature``, built from swarm's own
  prompts and tool schemas so every request body has the same size and content;
* the same tools: the ``python`` tool is swarm's own :class:`~swarm.tools.python_exec.PythonTool`
  (see :meth:`_Driver._run_tool` for why), ``echo`` is swarm's :class:`~swarm.tools.echo.EchoTool`;
* the same concurrency shape: every tool call of one turn runs at once (``asyncio.gather``), and an
  ``assign_task`` call is a subagent coroutine running its own tool loop that returns one message.

What it leaves out is exactly what swarm adds: no database, no step rows, no leases, no thread
pools between steps, no per-call workspace restored from storage.

``python -m bench.floor --agents 100 --tools 15 --tool python --latency 1.0`` runs it against an
in-process simulated model server (or ``--sim-url`` for one already running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# W1_TASK is the prompt `swarm demo` submits; importing it (rather than copying it) keeps the
# floor and swarm on the very same text, #sim directive included.
from swarm.cli.runs import W1_TASK
from swarm.config import Settings
from swarm.constants import ASSIGN_TASK, CREATE_SUBAGENT, ORCHESTRATION_TOOLS
from swarm.domain import prompts
from swarm.engine.orchestration import ORCHESTRATION_SCHEMAS
from swarm.llm.client import INSTANT_TEMPERATURE, THINKING_TEMPERATURE
from swarm.tools.base import ToolContext, ToolRegistry, ToolResult
from swarm.tools.builtin import default_registry


def budgets(agents: int, tools: int) -> tuple[int, int]:
    """(max_subagents, max_tool_calls) for a W1 of this size.

    The floor's system prompt states these budgets and the bench gives swarm the same ones, so the
    two send identical prompts. They are far above W1's needs so that swarm never appends a
    "budget nearly spent" note to a tool result (the floor has no budgets to enforce).
    """
    return max(100, 2 * agents), max(1500, 2 * agents * tools)


def w1_task(agents: int, tools: int, tool: str, latency: float) -> str:
    return W1_TASK.format(agents=agents, tools=tools, tool=tool, latency=latency)


@dataclass(kw_only=True)
class FloorResult:
    """What one floor run did and how long it took."""

    wall_seconds: float
    #: Chat-completion calls (every agent's steps): swarm's ``llm_calls``.
    llm_calls: int
    #: Real tool calls (python/echo), not create_subagent/assign_task: swarm's ``tool_calls``.
    tool_calls: int
    #: Kimi's latency metric: Σ over orchestrator stages of (1 + longest subagent launched there).
    critical_steps: int
    #: All LLM steps of all agents: what one agent working serially would take (swarm's definition).
    total_steps: int
    #: create_subagent + assign_task calls (bookkeeping, not counted as tool calls).
    orchestration_calls: int = 0
    subagents: int = 0
    #: Sum of the real tool calls' durations as they ran (overlapping, so contended).
    tool_seconds: float = 0.0
    #: Sum of the LLM calls' round-trip times (request sent → response received).
    llm_seconds: float = 0.0
    result: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """LLM calls + tool calls: the unit of "steps per second"."""
        return self.llm_calls + self.tool_calls

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": self.steps}


@dataclass
class _AgentOutcome:
    final: str
    #: This agent's critical length: its own steps plus, per stage, its longest child.
    critical: int


class _Driver:
    """One W1 run's state: counters, the in-memory subagent definitions, the tool thread pool."""

    def __init__(
        self,
        sim_url: str,
        settings: Settings,
        registry: ToolRegistry,
        *,
        workspace: Path,
        pool: ThreadPoolExecutor,
        max_steps: int,
    ) -> None:
        self.sim_url, self.settings, self.registry = sim_url, settings, registry
        self.workspace, self.pool, self.max_steps = workspace, pool, max_steps
        self.run_id = uuid.uuid4().hex
        self.defs: dict[str, str] = {}  # create_subagent: name → system prompt, in memory
        self.llm_calls = self.tool_calls = self.orchestration_calls = self.subagents = 0
        self.tool_seconds = self.llm_seconds = 0.0
        self.errors: list[str] = []
        thinking = settings.llm_thinking
        self.temperature = THINKING_TEMPERATURE if thinking else INSTANT_TEMPERATURE
        # Same tool lists swarm's executor sends: orchestration tools only where spawning is allowed
        # (depth < max_depth = 1, i.e. the orchestrator), the registry's tools for everyone.
        self.worker_schemas = registry.schemas()
        self.orchestrator_schemas = ORCHESTRATION_SCHEMAS + self.worker_schemas
        # One TLS context for all clients: httpx builds (and loads CA certificates into) a new
        # one per client otherwise, which costs CPU the floor must not spend (docs/benchmarks.md,
        # "Measured design choices"), and the sim speaks plain HTTP anyway.
        self._tls = ssl.create_default_context()

    def new_client(self) -> httpx.AsyncClient:
        """An HTTP client for ONE agent, whose calls are sequential: one keep-alive connection.

        Not one client shared by all agents: httpcore's connection pool scans every connection
        (a poll() and getpeername() syscall each, through anyio's attribute machinery) on every
        request, so with a swarm's agents in flight a shared AsyncClient spends most of the event
        loop's time in pool bookkeeping and its round trips grow accordingly (docs/benchmarks.md,
        "Measured design choices"). A floor that slow would flatter swarm.
        """
        s = self.settings
        return httpx.AsyncClient(
            base_url=self.sim_url,
            verify=self._tls,
            timeout=httpx.Timeout(s.llm_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )

    # ------------------------------------------------------------------ the model

    async def complete(
        self, http: httpx.AsyncClient, messages: list[dict[str, Any]], schemas: list[dict[str, Any]], agent_id: str
    ) -> dict[str, Any]:
        """One chat completion; returns the assistant message as it goes back into history."""
        # The body swarm's LLMClient sends for llm_flavor="moonshot" with thinking on.
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "stream": False,
            "temperature": self.temperature,
        }
        if schemas:
            body["tools"] = schemas
        headers = {"X-Swarm-Run-Id": self.run_id, "X-Swarm-Agent-Id": agent_id}
        started = time.perf_counter()
        response = await http.post("/chat/completions", json=body, headers=headers)
        response.raise_for_status()
        self.llm_seconds += time.perf_counter() - started
        self.llm_calls += 1
        message = response.json()["choices"][0]["message"]
        # History entry shaped like swarm's conversation.to_openai(): content never None,
        # reasoning_content kept (Kimi answers 400 without it on tool-call turns).
        out: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                }
                for c in message["tool_calls"]
            ]
        if message.get("reasoning_content"):
            out["reasoning_content"] = message["reasoning_content"]
        return out

    # ------------------------------------------------------------------ agents

    async def agent(self, agent_id: str, system: str, prompt: str, depth: int) -> _AgentOutcome:
        """An agent's tool loop: call the model, run the turn's calls concurrently, repeat."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        schemas = self.orchestrator_schemas if depth == 0 else self.worker_schemas
        critical = 0
        async with self.new_client() as http:
            for step in range(self.max_steps):
                request = messages
                if step + 1 >= self.max_steps:  # swarm's last-step note, same wording
                    request = [*messages, {"role": "user", "content": prompts.LAST_STEP_NOTE}]
                reply = await self.complete(http, request, schemas, agent_id)
                messages.append(reply)
                calls = reply.get("tool_calls") or []
                if not calls:
                    return _AgentOutcome(reply["content"], critical + 1)
                outcomes = await asyncio.gather(*(self.call(agent_id, c, depth) for c in calls))
                # Stage cost: this step plus the longest subagent launched in it (0 if none).
                critical += 1 + max((child for _, child in outcomes), default=0)
                messages.extend(
                    {"role": "tool", "content": text, "tool_call_id": c["id"]}
                    for c, (text, _) in zip(calls, outcomes, strict=True)
                )
        self.errors.append(f"agent {agent_id} hit the step limit ({self.max_steps})")
        return _AgentOutcome("", critical)

    async def call(self, agent_id: str, call: dict[str, Any], depth: int) -> tuple[str, int]:
        """Run one tool call; returns (result text, critical length of a launched subagent)."""
        name = call["function"]["name"]
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
        except json.JSONDecodeError as exc:
            return f"The arguments of your {name} call are not valid JSON ({exc.msg}).", 0
        if name == CREATE_SUBAGENT and depth == 0:
            self.orchestration_calls += 1
            self.defs[args["name"]] = args["system_prompt"]
            return (
                f"Created subagent {args['name']!r}. Launch it with assign_task(agent={args['name']!r}, prompt=...)."
            ), 0
        if name == ASSIGN_TASK and depth == 0:
            self.orchestration_calls += 1
            system = self.defs.get(args["agent"])
            if system is None:
                return f"No subagent named {args['agent']!r} exists in this run.", 0
            self.subagents += 1
            child = await self.agent(
                uuid.uuid4().hex, prompts.subagent_system(system, self.max_steps), args["prompt"], depth + 1
            )
            return child.final, child.critical
        tool = self.registry.get(name)
        if tool is None or name in ORCHESTRATION_TOOLS:
            return f"Unknown tool {name!r}.", 0
        self.tool_calls += 1
        started = time.perf_counter()
        result = await self._run_tool(tool, args, agent_id)
        self.tool_seconds += time.perf_counter() - started
        return result.content, 0

    async def _run_tool(self, tool: Any, args: dict[str, Any], agent_id: str) -> ToolResult:
        ctx = ToolContext(
            run_id=self.run_id,
            agent_id=agent_id,
            step_id=uuid.uuid4().hex,
            workspace=self.workspace,
            settings=self.settings,
        )
        if not tool.uses_workspace:
            # echo is a pure in-memory function: a bare driver just calls it.
            return tool.run(args, ctx)  # type: ignore[no-any-return]
        # The python tool is swarm's own PythonTool.run, on a thread. Re-implementing its command
        # line with asyncio subprocesses would risk drifting from it (interpreter path, -I -S -B,
        # the bootstrap, rlimits, env, process-group kill, output capture); calling it guarantees
        # the floor spawns byte-for-byte the same children and post-processes output the same
        # way. The thread only waits in select() on the child's pipes with the GIL released, so
        # it adds next to nothing over an asyncio subprocess. The pool is as wide as the number
        # of W1 tool calls that can be in flight at once (one per subagent, see run_floor), so
        # no call queues; capping it at swarm's tool_concurrency instead made no difference beyond
        # noise to the floor's wall (docs/benchmarks.md, "Measured design choices").
        # The one difference, by design: one working directory for the whole run, where swarm
        # restores a fresh per-call workspace from its database (that is persistence overhead).
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, tool.run, args, ctx)


def floor_settings(sim_url: str, home: Path | None = None) -> Settings:
    """Swarm's defaults (model name, thinking, python limits), isolated from .env files."""
    values: dict[str, Any] = {"llm_base_url": sim_url, "broker_url": ""}
    if home is not None:
        values["home"] = home
    return Settings(_env_file=None, **values)


async def run_floor(
    sim_url: str,
    agents: int,
    tools: int,
    tool: str,
    latency: float,
    *,
    settings: Settings | None = None,
    tool_threads: int | None = None,
) -> FloorResult:
    """Play W1 (``agents`` subagents x ``tools`` calls of ``tool``) against the model at ``sim_url``.

    ``tool_threads`` caps concurrent python tool calls; the default (None) never makes one wait,
    which is what a bare driver does: every subagent's call runs at once.
    """
    s = settings or floor_settings(sim_url)
    max_subagents, max_tool_calls = budgets(agents, tools)
    system = prompts.ORCHESTRATOR_SYSTEM.format(
        max_subagents=max_subagents, max_tool_calls=max_tool_calls, max_steps=s.max_steps_per_agent
    )
    threads = tool_threads or max(1, agents)
    with (
        tempfile.TemporaryDirectory(prefix="swarm-floor-") as tmp,
        ThreadPoolExecutor(threads, thread_name_prefix="floor-tool") as pool,
    ):
        driver = _Driver(
            sim_url, s, default_registry(s), workspace=Path(tmp), pool=pool, max_steps=s.max_steps_per_agent
        )
        started = time.perf_counter()
        outcome = await driver.agent(uuid.uuid4().hex, system, w1_task(agents, tools, tool, latency), 0)
        wall = time.perf_counter() - started
    return FloorResult(
        wall_seconds=wall,
        llm_calls=driver.llm_calls,
        tool_calls=driver.tool_calls,
        critical_steps=outcome.critical,
        total_steps=driver.llm_calls,
        orchestration_calls=driver.orchestration_calls,
        subagents=driver.subagents,
        tool_seconds=driver.tool_seconds,
        llm_seconds=driver.llm_seconds,
        result=outcome.final,
        errors=driver.errors,
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n", 1)[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--tools", type=int, default=15)
    p.add_argument("--tool", choices=("python", "echo"), default="python")
    p.add_argument("--latency", type=float, default=1.0, help="simulated model seconds per call")
    p.add_argument("--sim-url", default="", help="an OpenAI base URL (.../v1); default: start the sim here")
    p.add_argument("--tool-threads", type=int, default=None, help="cap on concurrent python calls")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)

    def play(url: str) -> FloorResult:
        return asyncio.run(run_floor(url, a.agents, a.tools, a.tool, a.latency, tool_threads=a.tool_threads))

    if a.sim_url:
        res = play(a.sim_url)
    else:
        from swarm.sim import SimConfig, SimServer

        with SimServer(SimConfig(port=0)) as sim:
            res = play(sim.url)
    if a.json:
        print(json.dumps(res.as_dict(), indent=2))
        return
    ideal = res.critical_steps * a.latency
    print(
        f"floor W1 agents={a.agents} tools={a.tools} tool={a.tool} latency={a.latency:g}: "
        f"wall {res.wall_seconds:.2f} s, {res.llm_calls} LLM calls, {res.tool_calls} tool calls, "
        f"critical steps {res.critical_steps}, total steps {res.total_steps}"
        + (
            f", wall / ideal {res.wall_seconds / ideal:.2f}x"
            if ideal
            else f", {res.steps / res.wall_seconds:.0f} steps/s"
        )
    )
    print(res.result)


if __name__ == "__main__":
    main()
