"""A deterministic, OpenAI-compatible stand-in for Kimi K2.5 playing an agent swarm.

``with SimServer(SimConfig(params=SimParams(agents=3))) as sim:`` gives a real HTTP endpoint at ``sim.url``; a
``#sim agents=100 tools=15 latency=1.0`` line in a run's prompt reshapes the swarm per run.
"""

from swarm.sim.params import SimParams, parse_directive
from swarm.sim.server import SimConfig, SimServer, create_app, serve

__all__ = ["SimConfig", "SimParams", "SimServer", "create_app", "parse_directive", "serve"]
