"""OpenTelemetry metrics for a cache: pass the hook as ``metrics_hook=``.

Counters ``<namespace>.hits``, ``.misses``, ``.evictions``, ``.expirations`` with
namespace/layer/reason attributes, a histogram of hit similarity, and an observable
gauge of entries fed by ``update_gauges``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mneme._errors import StoreBackendError
from mneme._types import Stats

__all__ = ["OTelMetricsHook"]


def _metrics_api() -> Any:
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise StoreBackendError(
            "OTelMetricsHook requires the optional 'otel' extra: "
            "pip install 'mneme-semantic-cache[otel]'"
        ) from exc
    return metrics


class OTelMetricsHook:
    def __init__(self, meter: Any = None, namespace: str = "mneme") -> None:
        metrics = _metrics_api()
        self._metrics = metrics
        meter = meter if meter is not None else metrics.get_meter("mneme")
        self.hits = meter.create_counter(f"{namespace}.hits", description="Cache hits")
        self.misses = meter.create_counter(f"{namespace}.misses", description="Cache misses")
        self.refusals = meter.create_counter(
            f"{namespace}.refusals", description="Candidates refused by a near-miss check"
        )
        self.evictions = meter.create_counter(f"{namespace}.evictions")
        self.expirations = meter.create_counter(f"{namespace}.expirations")
        self.similarity = meter.create_histogram(f"{namespace}.hit_similarity")
        self._entries: dict[str, int] = {}
        meter.create_observable_gauge(f"{namespace}.entries", callbacks=[self._observe])

    def _observe(self, _options: Any) -> Iterable[Any]:
        return [self._metrics.Observation(n, {"namespace": ns}) for ns, n in self._entries.items()]

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        ns = str(fields.get("namespace"))
        if event == "hit":
            self.hits.add(1, {"namespace": ns, "layer": fields["layer"]})
            self.similarity.record(float(fields["similarity"]), {"layer": fields["layer"]})
        elif event == "miss":
            self.misses.add(1, {"namespace": ns, "reason": fields["reason"]})
        elif event == "refused":
            self.refusals.add(1, {"namespace": ns, "check": fields["check"]})
        elif event == "eviction":
            self.evictions.add(int(fields["count"]), {"namespace": ns})
        elif event == "expired":
            self.expirations.add(int(fields["count"]), {"namespace": ns})

    def update_gauges(self, stats: Stats) -> None:
        """Record ``cache.stats(namespace=...)`` for the entries gauge."""
        self._entries[stats.namespace or "all"] = stats.entries
