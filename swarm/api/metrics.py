"""Prometheus metrics: run/step/token figures read from the database on each scrape, so any
number of API replicas report the same truth — the finished runs' step figures from maintained
totals, the running runs' from their steps (``store/step_stats.py``), never a scan of every
step — plus this process's request latencies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm.constants import METRIC_BUCKETS
from swarm.domain.status import RunStatus
from swarm.store.store import StateStore

#: Seconds (the store keeps a count per bucket: ``store/step_stats.py``).
BUCKETS = METRIC_BUCKETS


class StoreCollector(Collector):
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        snap = self.store.metrics_snapshot()
        runs = GaugeMetricFamily("swarm_runs", "Runs by status.", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], snap["runs"].get(status.value, 0))
        yield runs
        yield GaugeMetricFamily("swarm_active_runs", "Runs now running.", value=snap["runs"].get("running", 0))
        yield GaugeMetricFamily(
            "swarm_active_agents", "Agents now running (in running runs).", value=snap["active_agents"]
        )
        steps = GaugeMetricFamily(
            "swarm_steps", "Steps (LLM calls and tool calls) by kind and status.", labels=["kind", "status"]
        )
        for kind, status, n in snap["steps"]:
            steps.add_metric([kind, status], n)
        yield steps
        yield _histogram("swarm_step_duration_seconds", "Step latency: claim to commit.", snap["step_latency"])
        yield _histogram("swarm_step_queue_wait_seconds", "Queue wait: ready to claimed.", snap["queue_wait"])
        tokens = CounterMetricFamily("swarm_tokens", "Model tokens used, all runs.", labels=["direction"])
        tokens.add_metric(["in"], snap["tokens_in"])
        tokens.add_metric(["out"], snap["tokens_out"])
        tokens.add_metric(["cached"], snap["tokens_cached"])
        yield tokens
        yield CounterMetricFamily(
            "swarm_cost_usd", "USD spent on model calls, all runs with a known cost.", value=snap["cost_usd"]
        )
        yield GaugeMetricFamily(
            "swarm_unpriced_runs", "Runs whose cost is unknown (a model without a price).", value=snap["unpriced_runs"]
        )
        yield GaugeMetricFamily(
            "swarm_metrics_scrape_seconds",
            "Time the database queries of this scrape took.",
            value=time.perf_counter() - t0,
        )


def _histogram(name: str, doc: str, data: dict[str, dict[str, Any]]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=["kind"])
    for kind, d in sorted(data.items()):
        buckets = [(str(b), float(c)) for b, c in zip(BUCKETS, d["buckets"], strict=True)]
        buckets.append(("+Inf", float(d["count"])))
        h.add_metric([kind], buckets, sum_value=float(d["sum"]))
    return h


def make_registry(store: StateStore) -> tuple[CollectorRegistry, Histogram]:
    """A registry per app (tests build several apps in one process)."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    requests = Histogram(
        "swarm_api_request_duration_seconds",
        "API request latency by route.",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )
    return registry, requests
