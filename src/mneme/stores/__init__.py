"""Where entries live. ``MemoryStore`` and ``SQLiteStore`` are here; the network stores
are in ``mneme.stores.postgres``, ``mneme.stores.redis`` and ``mneme.stores.dynamodb``,
each importing its driver only when a store is made."""

from __future__ import annotations

from mneme.stores.async_protocol import AsyncBatchStore, AsyncStore, AsyncVectorSearchStore
from mneme.stores.memory import MemoryStore
from mneme.stores.protocol import BatchStore, ChangeTrackingStore, Store, VectorSearchStore
from mneme.stores.sqlite import SQLiteStore

__all__ = [
    "AsyncBatchStore",
    "AsyncStore",
    "AsyncVectorSearchStore",
    "BatchStore",
    "ChangeTrackingStore",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "VectorSearchStore",
]
