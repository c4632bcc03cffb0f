"""``python -m swarm.sim``: run the simulated model in the foreground."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from swarm.sim.capacity import SimLimits
from swarm.sim.params import FAULTS, SIM_TOOLS, SimParams
from swarm.sim.server import SimConfig, serve


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> SimConfig:
    d, dp = SimConfig(), SimParams()
    p = argparse.ArgumentParser(
        prog="python -m swarm.sim", description="Deterministic OpenAI-compatible Kimi swarm simulator."
    )
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--agents", type=int, default=dp.agents, help="subagent tasks per run (N)")
    p.add_argument("--tools", type=int, default=dp.tools, help="tool calls per subagent (K)")
    p.add_argument("--tool", choices=SIM_TOOLS, default=dp.tool)
    p.add_argument("--latency", type=float, default=dp.latency, help="seconds per completion")
    p.add_argument("--tool-latency", type=float, default=dp.tool_latency, help="seconds each python tool call sleeps")
    p.add_argument("--fault", choices=FAULTS, default=None)
    p.add_argument("--http", default=None, help='HTTP fault: "429x2", "500x1", "401", "quota"...')
    p.add_argument("--no-thinking", dest="thinking", action="store_false", help="reply without reasoning_content")
    p.add_argument("--model", default=d.model)
    p.add_argument("--max-concurrency", type=_positive, default=None, help="requests in flight; beyond: 429")
    p.add_argument("--rpm", type=_positive, default=None, help="requests per minute; beyond: 429")
    p.add_argument("--tpm", type=_positive, default=None, help="prompt tokens per minute; beyond: 429")
    a = p.parse_args(argv)
    params = SimParams(
        agents=a.agents,
        tools=a.tools,
        tool=a.tool,
        latency=a.latency,
        tool_latency=a.tool_latency,
        fault=a.fault,
        http=a.http,
        thinking=a.thinking,
    )
    limits = SimLimits(max_concurrency=a.max_concurrency, rpm=a.rpm, tpm=a.tpm)
    return SimConfig(params=params, host=a.host, port=a.port, model=a.model, limits=limits)


def main(argv: Sequence[str] | None = None) -> None:
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
