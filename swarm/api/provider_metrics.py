"""Prometheus gauges of the model provider's capacity (docs/providers.md): the shared limit, calls
in flight and waiting for capacity, calls made and 429s seen, per provider. Read on each scrape
through the Runs service (``Runs.provider``: Redis for a cluster, so every API replica reports the
same figures; this process for embedded mode). No provider limits configured: nothing to show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GAUGES = (
    ("swarm_provider_limit", "limit", "Model calls allowed in flight now (adaptive, <= the configured cap)."),
    ("swarm_provider_max_concurrency", "max_concurrency", "The configured cap of model calls in flight."),
    ("swarm_provider_in_flight", "in_flight", "Model calls in flight now, all workers."),
    ("swarm_provider_waiting", "waiting", "Model calls waiting for provider capacity now."),
    ("swarm_provider_hold_seconds", "hold_seconds", "Seconds left of a Retry-After holding every call back."),
)
COUNTERS = (
    ("swarm_provider_calls", "calls", "Model calls started under the provider capacity."),
    ("swarm_provider_rate_limited", "throttled", "429 'slow down' answers from the provider."),
)


class ProviderCollector(Collector):
    def __init__(self, views: Callable[[], list[dict[str, Any]]]) -> None:
        self.views = views

    def collect(self) -> Iterator[Metric]:
        views = self.views()
        if not views:
            return
        for name, field, doc in GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=["provider"])
            for v in views:
                if v[field] is not None:
                    gauge.add_metric([v["provider"]], float(v[field]))
            yield gauge
        for name, field, doc in COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=["provider"])
            for v in views:
                counter.add_metric([v["provider"]], float(v[field]))
            yield counter
