"""Questions the caches ask of a store, sync or async."""

from __future__ import annotations

from typing import Any, Protocol, TypeGuard, runtime_checkable

from mneme.stores.async_protocol import AsyncStore, AsyncVectorSearchStore
from mneme.stores.protocol import VectorSearchStore

__all__ = ["AsyncCapableStore", "ReportsReplicas", "searches_itself"]


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
