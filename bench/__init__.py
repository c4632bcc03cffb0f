"""Benchmarks of swarm against the floor (a bare asyncio driver); see bench/README.md."""
