"""Prometheus gauges of the model provider's capacity (docs/providers.md): the shared limit, calls
in flight and waiting for capacity, calls made and 429s seen, per provider. Read on each scrape
from where the capacity is kept — Redis for a cluster (the same figures on every API replica),
this process for embedded mode. A provider without limits configured has nothing shared to show."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm.config import Settings
from swarm.domain.capacity import resolve_limits
from swarm.llm.providers import capacity_for


class ProviderCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        s = self.settings
        if not resolve_limits(s.provider_tier, s.provider_concurrency, s.provider_rpm, s.provider_tpm).limited:
            return
        view = capacity_for(s).snapshot()
        labels = ["provider"]
        figures = (
            (
                "swarm_provider_limit",
                "Model calls allowed in flight now (adaptive, <= the configured cap).",
                view.limit,
            ),
            ("swarm_provider_max_concurrency", "The configured cap of model calls in flight.", view.max_concurrency),
            ("swarm_provider_in_flight", "Model calls in flight now, all workers.", view.in_flight),
            ("swarm_provider_waiting", "Model calls waiting for provider capacity now.", view.waiting),
            (
                "swarm_provider_hold_seconds",
                "Seconds left of a Retry-After holding every call back.",
                view.hold_seconds,
            ),
        )
        for name, doc, value in figures:
            if value is not None:
                g = GaugeMetricFamily(name, doc, labels=labels)
                g.add_metric([view.label], float(value))
                yield g
        calls = CounterMetricFamily("swarm_provider_calls", "Model calls started under the capacity.", labels=labels)
        calls.add_metric([view.label], float(view.calls))
        yield calls
        limited = CounterMetricFamily(
            "swarm_provider_rate_limited", "429 'slow down' answers from the provider.", labels=labels
        )
        limited.add_metric([view.label], float(view.throttled))
        yield limited
