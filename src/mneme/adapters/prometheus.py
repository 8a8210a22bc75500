"""Prometheus metrics for a cache: pass the hook as ``metrics_hook=``.

Counters ``<namespace>_hits_total{namespace,layer}``, ``_misses_total{namespace,reason}``,
``_refusals_total{namespace,check}`` (near-miss checks), ``_evictions_total{namespace}``,
``_expirations_total{namespace}``, a histogram of hit similarity, and gauges set from
``Stats`` by ``update_gauges``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mneme._errors import StoreBackendError
from mneme._types import Stats

__all__ = ["PrometheusMetricsHook"]


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise StoreBackendError(
            "PrometheusMetricsHook requires the optional 'prometheus' extra: "
            "pip install 'mneme-semantic-cache[prometheus]'"
        ) from exc
    return prometheus_client


class PrometheusMetricsHook:
    def __init__(self, registry: Any = None, namespace: str = "mneme") -> None:
        pc = _client()
        registry = registry if registry is not None else pc.REGISTRY
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.hits = pc.Counter("hits", "Cache hits", ["namespace", "layer"], **kw)
        self.misses = pc.Counter("misses", "Cache misses", ["namespace", "reason"], **kw)
        self.refusals = pc.Counter(
            "refusals", "Candidates refused by a near-miss check", ["namespace", "check"], **kw
        )
        self.evictions = pc.Counter("evictions", "Entries evicted", ["namespace"], **kw)
        self.expirations = pc.Counter("expirations", "Entries expired", ["namespace"], **kw)
        self.similarity = pc.Histogram(
            "hit_similarity",
            "Similarity of served hits",
            ["layer"],
            buckets=(0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
            **kw,
        )
        self.entries = pc.Gauge("entries", "Entries stored", ["namespace"], **kw)
        self.index_bytes = pc.Gauge("index_memory_bytes", "In-process index size", **kw)

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        ns = str(fields.get("namespace"))
        if event == "hit":
            self.hits.labels(ns, fields["layer"]).inc()
            self.similarity.labels(fields["layer"]).observe(float(fields["similarity"]))
        elif event == "miss":
            self.misses.labels(ns, fields["reason"]).inc()
        elif event == "refused":
            self.refusals.labels(ns, fields["check"]).inc()
        elif event == "eviction":
            self.evictions.labels(ns).inc(int(fields["count"]))
        elif event == "expired":
            self.expirations.labels(ns).inc(int(fields["count"]))

    def update_gauges(self, stats: Stats) -> None:
        """Set gauges from ``cache.stats(namespace=...)`` (namespace None is "all")."""
        self.entries.labels(stats.namespace or "all").set(stats.entries)
        self.index_bytes.set(stats.index_memory_bytes or 0)
