"""Questions the caches ask of a store, sync or async."""

from __future__ import annotations

from typing import Protocol, TypeGuard, runtime_checkable

from mneme.stores.async_protocol import AsyncStore, AsyncVectorSearchStore
from mneme.stores.protocol import VectorSearchStore

__all__ = ["AsyncCapableStore", "searches_itself"]


@runtime_checkable
class AsyncCapableStore(Protocol):
    """A sync store that can hand the async cache a native async twin of itself
    (None when it cannot, e.g. built on a caller's sync connection)."""

    def to_async(self) -> AsyncStore | None: ...


def searches_itself(store: object) -> TypeGuard[VectorSearchStore | AsyncVectorSearchStore]:
    """Whether an opened store, sync or async, answers Layer-2 queries itself."""
    return isinstance(store, VectorSearchStore | AsyncVectorSearchStore) and bool(
        store.vector_search_enabled
    )
