"""What W1 costs: the cached share of its input tokens and its price, with and without the cache.

W1 (100 subagents × 15 tool calls, ``echo`` tool, no model latency: cost depends on tokens only)
runs embedded (LocalRuntime + SQLite) against an in-process simulated model whose Kimi-style
prefix cache reports ``cached_tokens`` in 256-token blocks. Reported, from the run's own summary
and cross-checked against what the simulator reported:

* ``cached_share``: cached input tokens / input tokens (target >= 0.95);
* ``cost_usd``: what swarm recorded, at the price table's prices (default: kimi-k2.5, $0.60 miss /
  $0.10 hit / $3.00 output per million tokens);
* ``cost_without_cache_usd``: the same tokens with every input token billed as a miss.

The simulator's cache starts empty, so the first request of each prefix misses, as on a provider.
``python -m bench.cost`` (about a minute); ``--agents 10 --tools 3 --out -`` for a smoke run.
Results go to ``bench/results/cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import write_results
from bench.floor import budgets, w1_task
from swarm.config import Settings
from swarm.domain import pricing
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim import SimConfig, SimServer

RESULTS = Path(__file__).resolve().parent / "results" / "cost.json"


def settings(sim_url: str, home: Path, model: str) -> Settings:
    return Settings(
        _env_file=None,
        home=home,
        database_url=f"sqlite:///{home / 'swarm.db'}",
        llm_base_url=sim_url,
        broker_url="",
        model=model,
    )


def measure(agents: int, tools: int, model: str, prices: pricing.PriceTable) -> dict[str, Any]:
    """One W1 on a fresh sim (empty cache) and a fresh embedded runtime."""
    price = prices.price(model)
    with SimServer(SimConfig(port=0)) as sim, tempfile.TemporaryDirectory(prefix="swarm-cost-") as tmp:
        s = settings(sim.url, Path(tmp), model)
        max_subagents, max_tool_calls = budgets(agents, tools)
        with LocalRuntime(s) as rt:
            started = time.perf_counter()
            run_id = rt.submit(
                run_spec(
                    s, w1_task(agents, tools, "echo", 0.0), max_subagents=max_subagents, max_tool_calls=max_tool_calls
                )
            )
            summary = rt.wait(run_id, timeout=3600, poll=0.25)
            wall = time.perf_counter() - started
        reported = sim.usage(run_id)
    calls = reported["calls"]
    sim_in = sum(c["prompt_tokens"] for c in calls)
    sim_cached = sum(c["cached_tokens"] for c in calls)
    sim_out = sum(c["completion_tokens"] for c in calls)
    uncached = pricing.Usage(summary.tokens_in, 0, summary.tokens_out)
    keys = {c["prompt_cache_key"] for c in calls}
    # Tokens no prefix cache can serve: what each request added to its agent's previous one.
    new, last = 0, {}
    for c in calls:
        new += c["prompt_tokens"] - last.get(c["agent_id"], 0) if c["agent_id"] in last else 0
        last[c["agent_id"]] = c["prompt_tokens"]
    return {
        "status": summary.status,
        "model": model,
        "agents": agents,
        "tools": tools,
        "llm_calls": summary.llm_calls,
        "wall_seconds": round(wall, 2),
        "tokens_in": summary.tokens_in,
        "tokens_cached": summary.tokens_cached,
        "tokens_out": summary.tokens_out,
        "cached_share": round(summary.tokens_cached / summary.tokens_in, 4) if summary.tokens_in else 0.0,
        "cost_usd": summary.cost_usd,
        "cost_without_cache_usd": pricing.usd(pricing.cost(uncached, price)),
        "prompt_cache_keys": len(keys),
        # Requests that did not start with every whole block of their agent's previous request.
        "prefix_breaks": reported["prefix_breaks"],
        "new_tokens_share": round(new / sim_in, 4) if sim_in else 0.0,
        # What the simulator reported must be what swarm recorded, token for token.
        "matches_simulator": (sim_in, sim_cached, sim_out)
        == (summary.tokens_in, summary.tokens_cached, summary.tokens_out),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n", 1)[0])
    p.add_argument("--agents", type=int, default=100, help="subagents (W1: 100)")
    p.add_argument("--tools", type=int, default=15, help="tool calls per subagent (W1: 15)")
    p.add_argument("--model", default="kimi-k2.5", help="model name, priced by the table (SWARM_PRICES adds models)")
    p.add_argument("--prices", default="", help="a price file (TOML or JSON), as SWARM_PRICES")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file ('-' for none)")
    p.add_argument("--json", action="store_true", help="print the results JSON to stdout")
    return p.parse_args(argv)


def report(r: dict[str, Any]) -> str:
    saved = 1 - r["cost_usd"] / r["cost_without_cache_usd"] if r["cost_usd"] and r["cost_without_cache_usd"] else 0
    return "\n".join(
        [
            f"W1 ({r['agents']} subagents × {r['tools']} tools, {r['llm_calls']} model calls, {r['model']}): "
            f"{r['status']}",
            f"  input tokens   {r['tokens_in']:>12,}   cached {r['tokens_cached']:,} ({100 * r['cached_share']:.1f} %)",
            f"  later turns' new input: {100 * r['new_tokens_share']:.1f} % of input (no prefix cache serves it); "
            f"requests that broke their agent's prefix: {r['prefix_breaks']}",
            f"  output tokens  {r['tokens_out']:>12,}",
            f"  cost           ${r['cost_usd']:.4f} with the cache, ${r['cost_without_cache_usd']:.4f} without "
            f"({100 * saved:.1f} % saved)",
            f"  recorded usage equals the simulator's: {r['matches_simulator']}",
        ]
    )


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> int:
    a = parse_args(argv)
    prices = pricing.load(a.prices)
    results = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **measure(a.agents, a.tools, a.model, prices),
    }
    write_results(a.out, results, log)
    if a.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        log(report(results))
    return 0 if results["status"] == "succeeded" and results["matches_simulator"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
