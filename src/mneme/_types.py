"""Public data classes and type aliases."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

VectorDtype: TypeAlias = Literal["float32", "float16", "int8"]
HitLayer: TypeAlias = Literal["exact", "semantic"]
IndexBackend: TypeAlias = Literal["auto", "numpy", "hnsw"]
MultiProcessMode: TypeAlias = Literal["single", "stale-tolerant", "mmap-shared"]

ConfidenceFn: TypeAlias = Callable[[float, float, Mapping[str, Any] | None], float]
"""(similarity, age_seconds, metadata) -> confidence in [0, 1]."""
Validator: TypeAlias = Callable[[str], bool]
"""response -> whether it may be served."""
MetricsHook: TypeAlias = Callable[[str, Mapping[str, Any]], None]
"""(event, fields) -> None; events: hit, miss, eviction, expired."""


@dataclass(frozen=True, slots=True)
class Hit:
    response: str
    similarity: float
    confidence: float
    age_seconds: float
    layer: HitLayer
    namespace: str
    metadata: dict[str, Any]
    """The entry's metadata; {} when it has none."""


@dataclass(frozen=True, slots=True)
class Stats:
    namespace: str | None
    entries: int
    hits_exact: int
    hits_semantic: int
    misses: int
    evictions: int
    expirations: int
    embedder_fingerprint: str
    vector_dtype: VectorDtype
    memory_bytes_estimate: int
    index_memory_bytes: int | None = None
    index_tombstone_count: int | None = None


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    schema_version: int
    integrity_ok: bool
    embedder_fingerprint_match: bool
    entries: int
    namespaces: int
    oldest_entry_age_seconds: float | None
    index_backend: str
    store_backend: str
    vector_dtype: VectorDtype
    multi_process_mode: MultiProcessMode


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One cached entry as a store keeps it.

    ``embedding`` is little-endian float32, L2-normalised; timestamps are integer Unix
    seconds; ``ttl`` is seconds or None (never expires); ``id`` is 0 before insert.
    """

    id: int
    namespace: str
    query_hash: str
    query: str
    response: str
    embedding: bytes
    metadata: dict[str, Any] | None
    created_at: int
    last_accessed_at: int
    ttl: int | None
    access_count: int

    def is_expired(self, now: int) -> bool:
        return self.ttl is not None and now - self.created_at >= self.ttl
