"""Public data classes and type aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
"""(event, fields) -> None; events: hit, miss, refused, eviction, expired."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a long operation has got, as handed to a ``ProgressFn``.

    ``task`` names the step ("embed", "write", "export", "import", "backfill",
    "index", "catch-up"); ``done`` counts units finished so far; ``total`` is how many
    there will be, or None when that is not known in advance. A task reports once
    with ``done == 0`` when it starts and once with ``done == total`` when it ends.
    """

    task: str
    done: int
    total: int | None
    unit: str = "entries"


ProgressFn: TypeAlias = Callable[[Progress], None]
"""Called with the progress of a long operation, in the thread that runs it."""


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
    checks_passed: tuple[str, ...] = ()
    """The near-miss checks this semantic hit passed (empty for exact hits and when
    the cache runs no guards)."""


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
    refusals: dict[str, int] = field(default_factory=dict)
    """Candidates above the threshold refused by each near-miss check, by check name."""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A read replica as a store with replicas sees it.

    ``state``: "ok" (in rotation), "lagging" (replay more than the store's limit behind:
    skipped until it catches up) or "down" (the last attempt failed: skipped until the
    next probe). ``lag_seconds``: age of the last transaction the replica replayed, 0
    when it has replayed everything it received; ``lag_bytes``: WAL between the
    primary's position and the replica's (None when either is unknown). ``reads``:
    reads it answered for this store; ``failovers``: times it was taken out of rotation.
    """

    name: str
    state: Literal["ok", "lagging", "down"]
    lag_seconds: float | None
    lag_bytes: int | None
    replay_paused: bool | None
    reads: int
    failovers: int
    last_error: str | None

    def summary(self) -> str:
        """One line for a report, e.g. ``replica db-2:5432/app: ok, lag 0.0 s (0 B)``."""
        lag = "lag unknown" if self.lag_seconds is None else f"lag {self.lag_seconds:.1f} s"
        if self.lag_bytes is not None:
            lag += f" ({self.lag_bytes:,} B)"
        extra = ", replay paused" if self.replay_paused else ""
        error = f", last error: {self.last_error}" if self.last_error else ""
        return (
            f"replica {self.name}: {self.state}, {lag}{extra}, {self.reads} reads, "
            f"{self.failovers} failovers{error}"
        )


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
    replicas: tuple[ReplicaStatus, ...] = ()
    """Read replicas of a store that has them (Postgres ``replicas=``), else empty."""


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


class Candidates(list[tuple[StoredEntry, float]]):
    """A store's search result: ``(entry, cosine similarity)`` pairs, best first.

    ``below`` is True when the search was given a ``min_similarity`` and a neighbour
    among the ``k`` nearest fell below it: such neighbours are left out (their entries
    are not even read), and ``below`` is what tells the cache that the lookup ended at
    its threshold rather than running out of neighbours."""

    __slots__ = ("below",)

    def __init__(self, pairs: Iterable[tuple[StoredEntry, float]] = (), *, below: bool = False):
        super().__init__(pairs)
        self.below = below
