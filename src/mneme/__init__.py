"""mneme: a layered semantic cache for LLM responses.

Layer 1 answers an exact repeat of a query (normalised hash); Layer 2 answers a query
that means the same (cosine similarity above a threshold). Entries persist in a store:
SQLite by default, or memory, Postgres (optionally with pgvector), Redis, DynamoDB.
"""

from typing import TYPE_CHECKING, Any

from mneme._embedder import AsyncEmbedder, Embedder, to_async_embedder, to_sync_embedder
from mneme._errors import (
    CacheClosedError,
    CheckpointError,
    CorruptCacheError,
    EmbedderDimensionError,
    EmbedderMismatchError,
    IndexBackendUnavailableError,
    MnemeError,
    MultiProcessLockError,
    NamespaceQuotaExceededError,
    QuantizationError,
    SchemaMigrationError,
    StoreBackendError,
)
from mneme._types import (
    ConfidenceFn,
    Health,
    Hit,
    HitLayer,
    IndexBackend,
    MetricsHook,
    MultiProcessMode,
    Progress,
    ProgressFn,
    Stats,
    StoredEntry,
    Validator,
    VectorDtype,
)
from mneme._version import __version__
from mneme.cache import AsyncSemanticCache, SemanticCache
from mneme.index import Index
from mneme.stores import MemoryStore, SQLiteStore, Store, VectorSearchStore

__all__ = [
    "AsyncEmbedder",
    "AsyncSemanticCache",
    "CacheClosedError",
    "CheckpointError",
    "ConfidenceFn",
    "CorruptCacheError",
    "Embedder",
    "EmbedderDimensionError",
    "EmbedderMismatchError",
    "Health",
    "Hit",
    "HitLayer",
    "Index",
    "IndexBackend",
    "IndexBackendUnavailableError",
    "MemoryStore",
    "MetricsHook",
    "MnemeError",
    "MultiProcessLockError",
    "MultiProcessMode",
    "NamespaceQuotaExceededError",
    "Progress",
    "ProgressFn",
    "QuantizationError",
    "SQLiteStore",
    "SchemaMigrationError",
    "SemanticCache",
    "Stats",
    "Store",
    "StoreBackendError",
    "StoredEntry",
    "Validator",
    "VectorDtype",
    "VectorSearchStore",
    "__version__",
    "to_async_embedder",
    "to_sync_embedder",
]

if TYPE_CHECKING:
    from mneme.stores.dynamodb import DynamoDBStore as DynamoDBStore
    from mneme.stores.postgres import AsyncPostgresStore as AsyncPostgresStore
    from mneme.stores.postgres import PostgresStore as PostgresStore
    from mneme.stores.redis import RedisStore as RedisStore

# The network stores are reachable from here too, imported on first use so that
# ``import mneme`` never imports a driver.
_LAZY = {
    "PostgresStore": "mneme.stores.postgres",
    "AsyncPostgresStore": "mneme.stores.postgres",
    "RedisStore": "mneme.stores.redis",
    "DynamoDBStore": "mneme.stores.dynamodb",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mneme' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
