"""mneme: a layered semantic cache for LLM responses.

Layer 1 answers an exact repeat of a query (normalised hash); Layer 2 answers a query
that means the same (cosine similarity above a threshold). Entries persist in a store:
SQLite by default, or memory, Postgres (optionally with pgvector), Redis, DynamoDB.
"""

from ._async_cache import AsyncSemanticCache
from ._cache import SemanticCache
from ._embedder import AsyncEmbedder, Embedder, to_async_embedder, to_sync_embedder
from ._errors import (
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
from ._index import Index
from ._store import Store, VectorSearchStore
from ._store_memory import MemoryStore
from ._store_sqlite import SQLiteStore
from ._types import (
    ConfidenceFn,
    Health,
    Hit,
    HitLayer,
    IndexBackend,
    MetricsHook,
    MultiProcessMode,
    Stats,
    StoredEntry,
    Validator,
    VectorDtype,
)
from ._version import __version__

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
