"""Questions the caches ask of a store, sync or async."""

from __future__ import annotations

from typing import Any, Protocol, TypeGuard, runtime_checkable

from mneme.stores.async_protocol import (
    AsyncBatchStore,
    AsyncChunkedInsertStore,
    AsyncCounterBatchStore,
    AsyncStore,
    AsyncVectorSearchStore,
)
from mneme.stores.protocol import (
    BatchStore,
    ChunkedInsertStore,
    CounterBatchStore,
    VectorSearchStore,
)

__all__ = [
    "AsyncCapableStore",
    "ReportsReplicas",
    "describe",
    "has_batch_methods",
    "inserts_chunks",
    "writes_counters_at_once",
    "searches_itself",
]


@runtime_checkable
class AsyncCapableStore(Protocol):
    """A sync store that can hand the async cache a native async twin of itself
    (None when it cannot, e.g. built on a caller's sync connection)."""

    def to_async(self) -> AsyncStore | None: ...


@runtime_checkable
class ReportsReplicas(Protocol):
    """A store with read replicas: ``replica_status()`` returns (or, on an async store,
    awaits to) a tuple of ``ReplicaStatus``, which ``health()`` reports."""

    def replica_status(self) -> Any: ...


def searches_itself(store: object) -> TypeGuard[VectorSearchStore | AsyncVectorSearchStore]:
    """Whether an opened store, sync or async, answers Layer-2 queries itself."""
    return isinstance(store, VectorSearchStore | AsyncVectorSearchStore) and bool(
        store.vector_search_enabled
    )


def has_batch_methods(store: object) -> bool:
    """Whether a store has the batch methods; one written to mneme 1.0's protocol
    has not, and the cache then uses the base methods in loops."""
    return isinstance(store, BatchStore | AsyncBatchStore)


def writes_counters_at_once(store: object) -> bool:
    """Whether a store takes the counters of many namespaces in one call."""
    return isinstance(store, CounterBatchStore | AsyncCounterBatchStore)


def inserts_chunks(store: object) -> bool:
    """Whether a store takes a batch chunk by chunk, writing one while the next is made."""
    return isinstance(store, ChunkedInsertStore | AsyncChunkedInsertStore)


def describe(store: object) -> tuple[str, int | None]:
    """The store's label for ``Health.store_backend`` and its schema version. A store
    written to 1.0's protocol has neither: its label is its class name without
    "Store", lower-cased (as 1.0 reported it), and its version is read from its meta."""
    if isinstance(store, BatchStore | AsyncBatchStore):
        return store.backend_label, store.schema_version
    name = type(store).__name__
    return name.removesuffix("Store").lower() or name.lower(), None
