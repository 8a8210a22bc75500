"""What the sync and async caches share: configuration, entry building, the Layer-2
decision, counters and metrics. No I/O here; the shells do the talking to stores."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme._errors import EmbedderDimensionError
from mneme._policy import (
    CONFIDENCE_CUTOFF,
    check_metadata,
    check_namespace,
    check_text,
    check_ttl,
    to_bytes,
    unit_vector,
    unit_vectors,
)
from mneme._types import ConfidenceFn, Hit, MetricsHook, StoredEntry, Validator
from mneme.cache.options import CacheOptions
from mneme.stores.protocol import COUNTER_NAMES

log = logging.getLogger("mneme")


@dataclass(slots=True)
class PreparedPut:
    """A validated put, waiting for its embedding."""

    namespace: str
    query: str
    text: str
    query_hash: str
    response: str
    metadata: dict[str, Any] | None
    ttl: int | None
    embedding: npt.NDArray[np.float32] | None


def prepare_put(
    config: CacheOptions,
    query: object,
    response: object,
    *,
    namespace: object,
    metadata: object,
    ttl: object,
    embedding: object,
    dim: int,
) -> PreparedPut:
    """Validate everything about a put before anything is stored."""
    ns = check_namespace(namespace)
    limits = config.limits
    check_text("query", query, limits.max_query_bytes, "max_query_bytes")
    check_text("response", response, limits.max_response_bytes, "max_response_bytes")
    meta = check_metadata(metadata, limits.max_metadata_bytes)
    entry_ttl = config.default_ttl if ttl is None else check_ttl(ttl)
    text, qhash = config.key(query)
    vec = None if embedding is None else unit_vector(embedding, dim)
    return PreparedPut(ns, query, text, qhash, response, meta, entry_ttl, vec)  # type: ignore[arg-type]


_ITEM_KEYS = frozenset({"query", "response", "embedding", "metadata", "ttl", "namespace"})


def prepare_put_items(
    config: CacheOptions,
    items: Iterable[Mapping[str, Any]],
    namespace: str,
    dim: int,
    *,
    first: int = 0,
) -> list[PreparedPut]:
    """Validate every put_many item before anything is stored. ``first``: the
    position of the first item in the whole batch, for error messages."""
    prepared: list[PreparedPut] = []
    given: list[tuple[int, object]] = []  # (index in items, embedding) of items that carry one
    for n, item in enumerate(items):
        unknown = set(item) - _ITEM_KEYS
        if unknown or "query" not in item or "response" not in item:
            raise ValueError(
                f"put_many item {first + n} needs keys 'query' and 'response' (optional: "
                f"embedding, metadata, ttl, namespace); unknown: {sorted(unknown)}"
            )
        prepared.append(
            prepare_put(
                config,
                item["query"],
                item["response"],
                namespace=item.get("namespace", namespace),
                metadata=item.get("metadata"),
                ttl=item.get("ttl"),
                embedding=None,
                dim=dim,
            )
        )
        if item.get("embedding") is not None:
            given.append((n, item["embedding"]))
    # Checked and normalised together: per item, this was most of put_many's own time.
    vectors = unit_vectors([v for _, v in given], dim) if given else []
    for (n, _), vector in zip(given, vectors, strict=True):
        prepared[n].embedding = vector
    return prepared


def embedder_vector(raw: object, dim: int) -> npt.NDArray[np.float32]:
    """Check an embedder's output; a wrong shape is the embedder's fault, say so."""
    try:
        return unit_vector(raw, dim)
    except EmbedderDimensionError as exc:
        raise EmbedderDimensionError(
            f"embedder returned a vector of the wrong dim: {exc}"
        ) from None


def build_entry(p: PreparedPut, vector: npt.NDArray[np.float32], now: int) -> StoredEntry:
    return StoredEntry(
        id=0,
        namespace=p.namespace,
        query_hash=p.query_hash,
        query=p.query,
        response=p.response,
        embedding=to_bytes(vector),
        metadata=p.metadata,
        created_at=now,
        last_accessed_at=now,
        ttl=p.ttl,
        access_count=0,
    )


def _own(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A Hit's own copy of the metadata: a caller changing it must not change what
    the store (MemoryStore keeps the very dict) serves next time. No metadata is an
    empty dict, as in 1.0, so ``hit.metadata.get(...)`` always works."""
    if metadata is None:
        return {}
    if type(metadata) is dict and all(
        type(k) is str and type(v) in _SCALARS for k, v in metadata.items()
    ):
        return dict(metadata)  # flat: the shallow copy is a deep one
    return copy.deepcopy(metadata)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def exact_hit(entry: StoredEntry, now: int) -> Hit:
    return Hit(
        response=entry.response,
        similarity=1.0,
        confidence=1.0,
        age_seconds=float(max(now - entry.created_at, 0)),
        layer="exact",
        namespace=entry.namespace,
        metadata=_own(entry.metadata),
    )


@dataclass(slots=True)
class Decision:
    """Outcome of Layer 2 over the ranked candidates."""

    hit: Hit | None = None
    hit_id: int | None = None
    miss_reason: str | None = None
    expired: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    refused: list[tuple[str, float]] = field(default_factory=list)
    """(check, similarity) of each candidate a near-miss check refused."""


def decide_semantic(
    config: CacheOptions,
    candidates: Sequence[tuple[StoredEntry, float]],
    now: int,
    threshold: float,
    *,
    below_follows: bool = False,
    query: str | None = None,
) -> Decision:
    """Walk candidates best first: stop below the threshold, drop expired and invalid
    ones (the shell deletes them), skip ones a near-miss check refuses (comparing
    ``query`` with the candidate's stored query) and low-confidence ones, serve the
    first good one. ``below_follows`` says a neighbour below the threshold came after
    the candidates given (the shell did not fetch it), so running out of them is
    "below_threshold"; a miss after a refusal is "refused"."""
    d = Decision()
    guards = config.guards if query is not None else None
    for entry, similarity in candidates:
        if similarity < threshold:
            d.miss_reason = "refused" if d.refused else "below_threshold"
            return d
        if entry.is_expired(now):
            d.expired.append(entry.id)
            continue
        if guards is not None and query is not None:
            check = guards.refusal(query, entry.query)
            if check is not None:
                d.refused.append((check, float(similarity)))
                continue
        if not _call_validator(config.validator, entry.response):
            d.invalid.append(entry.id)
            continue
        age = float(max(now - entry.created_at, 0))
        confidence = _call_confidence(config.confidence_fn, similarity, age, entry.metadata)
        if confidence < CONFIDENCE_CUTOFF:
            continue
        d.hit = Hit(
            response=entry.response,
            similarity=float(similarity),
            confidence=float(confidence),
            age_seconds=age,
            layer="semantic",
            namespace=entry.namespace,
            metadata=_own(entry.metadata),
            checks_passed=() if guards is None else guards.names,
        )
        d.hit_id = entry.id
        return d
    if d.refused:
        d.miss_reason = "refused"
    else:
        d.miss_reason = "below_threshold" if below_follows else "no_match"
    return d


def _call_validator(validator: Validator, response: str) -> bool:
    return bool(validator(response))


def _call_confidence(fn: ConfidenceFn, similarity: float, age: float, meta: Any) -> float:
    # No metadata reaches the function as an empty dict, as in 1.0.
    return float(fn(similarity, age, {} if meta is None else meta))


class Counters:
    """Counter increments held in memory and flushed to the store in batches, so a
    get does not cost a store write just to count itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, int]] = {}
        self._events = 0

    def add(self, namespace: str, name: str, n: int = 1) -> None:
        with self._lock:
            ns = self._pending.setdefault(namespace, {})
            ns[name] = ns.get(name, 0) + n
            self._events += 1

    def should_flush(self, every: int = 64) -> bool:
        return self._events >= every

    def take(self) -> dict[str, dict[str, int]]:
        with self._lock:
            pending, self._pending, self._events = self._pending, {}, 0
            return pending

    def restore(self, pending: Mapping[str, Mapping[str, int]]) -> None:
        """Put back increments whose flush failed, so nothing is lost."""
        for ns, deltas in pending.items():
            for name, n in deltas.items():
                self.add(ns, name, n)

    def peek(self, namespace: str | None) -> dict[str, int]:
        with self._lock:
            total = dict.fromkeys(COUNTER_NAMES, 0)
            for ns, deltas in self._pending.items():
                if namespace is None or ns == namespace:
                    for name, n in deltas.items():
                        total[name] = total.get(name, 0) + n
            return total


def emit(hook: MetricsHook | None, event: str, fields: Mapping[str, Any]) -> None:
    """Call the metrics hook; a hook that raises is logged, never propagated."""
    if hook is None:
        return
    try:
        hook(event, fields)
    except Exception:
        log.exception("mneme metrics hook raised on %r event; ignoring", event)
