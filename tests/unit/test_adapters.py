"""Prometheus and OpenTelemetry metrics hooks fed by a real cache."""

from __future__ import annotations

import prometheus_client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mneme import MemoryStore, SemanticCache
from mneme.adapters.opentelemetry import OTelMetricsHook
from mneme.adapters.prometheus import PrometheusMetricsHook
from mneme.testing import HashingEmbedder


def _exercise(hook: PrometheusMetricsHook | OTelMetricsHook) -> SemanticCache:
    cache = SemanticCache(
        store=MemoryStore(),
        embedder=HashingEmbedder(64),
        metrics_hook=hook,
        namespace_quotas={"t": 1},
    )
    cache.put("What is the capital of France?", "Paris", namespace="t")
    cache.get("what is the capital of france?", namespace="t")
    cache.get("What is the capital city of France?", namespace="t")
    cache.get("bread recipes", namespace="t")
    cache.put("another question", "answer", namespace="t")  # evicts one
    cache.put("Is the 9:15 train to Leeds on time?", "Yes.", namespace="u")
    cache.get("Is the 9:45 train to Leeds on time?", namespace="u")  # refused: numbers
    return cache


def test_prometheus_hook_counts_events() -> None:
    registry = prometheus_client.CollectorRegistry()
    hook = PrometheusMetricsHook(registry=registry, namespace="mneme")
    cache = _exercise(hook)
    hook.update_gauges(cache.stats(namespace="t"))
    value = registry.get_sample_value
    assert value("mneme_hits_total", {"namespace": "t", "layer": "exact"}) == 1
    assert value("mneme_hits_total", {"namespace": "t", "layer": "semantic"}) == 1
    assert value("mneme_misses_total", {"namespace": "t", "reason": "below_threshold"}) == 1
    assert value("mneme_evictions_total", {"namespace": "t"}) == 1
    assert value("mneme_refusals_total", {"namespace": "u", "check": "numbers"}) == 1
    assert value("mneme_misses_total", {"namespace": "u", "reason": "refused"}) == 1
    assert value("mneme_entries", {"namespace": "t"}) == 1
    assert value("mneme_hit_similarity_count", {"layer": "semantic"}) == 1
    cache.close()


def test_otel_hook_counts_events() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    hook = OTelMetricsHook(meter=provider.get_meter("test"), namespace="mneme")
    cache = _exercise(hook)
    hook.update_gauges(cache.stats(namespace="t"))
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[tuple[dict[str, object], float]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    v = float(getattr(p, "value", 0) or getattr(p, "count", 0))
                    points.setdefault(metric.name, []).append((dict(p.attributes or {}), float(v)))
    assert ({"namespace": "t", "layer": "exact"}, 1.0) in points["mneme.hits"]
    assert ({"namespace": "t", "layer": "semantic"}, 1.0) in points["mneme.hits"]
    assert ({"namespace": "t", "reason": "below_threshold"}, 1.0) in points["mneme.misses"]
    assert ({"namespace": "t"}, 1.0) in points["mneme.evictions"]
    assert ({"namespace": "u", "check": "numbers"}, 1.0) in points["mneme.refusals"]
    assert ({"namespace": "u", "reason": "refused"}, 1.0) in points["mneme.misses"]
    assert ({"namespace": "t"}, 1.0) in points["mneme.entries"]
    cache.close()
    provider.shutdown()
