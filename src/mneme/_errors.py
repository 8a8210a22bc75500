"""One error tree: every error mneme raises on purpose derives from MnemeError."""

from __future__ import annotations

__all__ = [
    "CacheClosedError",
    "CheckpointError",
    "CorruptCacheError",
    "EmbedderDimensionError",
    "EmbedderMismatchError",
    "IndexBackendUnavailableError",
    "MnemeError",
    "MultiProcessLockError",
    "NamespaceQuotaExceededError",
    "QuantizationError",
    "SchemaMigrationError",
    "StoreBackendError",
]


class MnemeError(Exception):
    """Root of every error mneme raises."""


class EmbedderMismatchError(MnemeError):
    """The store was written by an embedder with another fingerprint."""


class EmbedderDimensionError(MnemeError):
    """A vector's dimension does not match the embedder or the store."""


class CorruptCacheError(MnemeError):
    """The store failed its integrity check."""


class SchemaMigrationError(MnemeError):
    """The on-disk schema cannot be used by this version of mneme."""


class CacheClosedError(MnemeError):
    """The cache or store is not open (never opened, or already closed)."""


class CheckpointError(MnemeError):
    """Snapshot or restore is not possible for this store."""


class IndexBackendUnavailableError(MnemeError):
    """The requested in-process index backend is not installed."""


class StoreBackendError(MnemeError):
    """The store's backend failed; the driver's error is chained as __cause__."""


class NamespaceQuotaExceededError(MnemeError):
    """A namespace cannot take another entry under its quota."""


class MultiProcessLockError(MnemeError):
    """A multi-process mode could not be set up or its lock taken."""


class QuantizationError(MnemeError):
    """Unknown vector dtype or a vector that cannot be quantized."""
