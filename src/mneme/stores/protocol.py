# Generated from async_protocol.py by scripts/unasync.py: edit that file, then run
# `make generate`. `make lint` fails when this file is stale.
"""The Store protocol every backend implements (mneme 1.0's), and the capabilities
a store may add: batch calls, change tracking and server-side search."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mneme._types import Candidates, StoredEntry

COUNTER_NAMES = ("hits_exact", "hits_semantic", "misses", "evictions", "expirations")
"""The per-namespace counters a store persists."""


@runtime_checkable
class Store(Protocol):
    """Durable home of cache entries: the methods every store has.

    These are the methods of mneme 1.0's ``Store`` protocol, so a store written for
    1.0 works unchanged; what this package adds is in the capability protocols below,
    which the cache detects when it opens a store and uses when they are there.

    Every method but the constructor and ``close`` raises ``CacheClosedError`` before
    ``open`` and after ``close``; ``close`` is idempotent and safe on a store never
    opened, and a closed store stays closed (``open`` raises too). Every mutation is
    atomic and bumps the version counter in the same transaction (inserts,
    replacements and deletes alike).
    """

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        """Connect/provision; on a store written before, check fingerprint and dim
        (``EmbedderMismatchError`` / ``EmbedderDimensionError``)."""

    def close(self) -> None:
        """Release what the store owns; idempotent, and final."""

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None: ...

    def get_by_id(self, id: int) -> StoredEntry | None: ...

    def count(self, namespace: str | None = None) -> int: ...

    def list_namespaces(self) -> list[str]:
        """Namespaces holding at least one entry, sorted."""

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> Iterable[int]:
        """Up to ``n`` ids, least recently used first (last_accessed_at, then id)."""

    def iter_all(self) -> Iterable[StoredEntry]:
        """Every entry, id ascending."""

    def iter_since(self, last_id: int) -> Iterable[StoredEntry]:
        """Entries with id > last_id, id ascending."""

    def insert(self, entry: StoredEntry) -> int:
        """Upsert on (namespace, query_hash): a new row gets a new id, a replaced row
        keeps its id and takes every other field from ``entry``. Returns the id."""

    def update_access(self, id: int, now: int) -> None:
        """Set last_accessed_at = now and add one to access_count. A store may defer
        and coalesce these, but must apply them before it answers ``iter_lru_ids``."""

    def delete_by_id(self, id: int) -> bool: ...

    def delete_expired(self, now: int, namespace: str | None = None) -> int: ...

    def clear_namespace(self, namespace: str) -> int: ...

    def set_namespace_quota(self, namespace: str, max_entries: int) -> None:
        """Set a namespace's quota (this package's stores also take None to remove it)."""

    def get_namespace_quota(self, namespace: str) -> int | None: ...

    def read_version_counter(self) -> int:
        """0 when fresh; strictly increases on every insert and delete."""

    def read_meta(self, key: str) -> str | None: ...

    def write_meta(self, key: str, value: str) -> None: ...

    def integrity_check(self) -> bool: ...

    def snapshot_to(self, dest_path: str) -> None:
        """Copy the whole store to a file, or raise ``CheckpointError`` naming the
        tool that backs this kind of store up."""

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> object:
        """Restore a ``snapshot_to`` file to ``dest_path`` and return an unopened
        store on it, or raise ``CheckpointError`` (a missing source included)."""


@runtime_checkable
class BatchStore(Store, Protocol):
    """A store that does in one call what the base protocol does in many.

    The cache uses these when the store has them all, and otherwise falls back to
    the base methods (a loop of ``insert`` for ``insert_many``, ``iter_all`` to build
    the index, counters kept as JSON under the meta key "counters" as mneme 1.0 did).
    """

    backend_label: str
    """Lower-case name reported as ``Health.store_backend``, e.g. "sqlite"."""
    schema_version: int
    """Version of the schema this store writes."""

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        """(id, namespace, embedding) with id > after_id, id ascending: what an
        in-process index needs and nothing more (no responses, no metadata)."""

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        """``insert`` for a batch, in one transaction (one version bump is enough);
        ids in input order. Two entries of the batch with the same (namespace,
        query_hash): the later wins, both get its id."""

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        """Entries found for the given hashes, keyed by hash (one round trip)."""

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        """Delete these ids in one transaction; returns how many were deleted per
        namespace (ids that did not exist are ignored)."""

    def oldest_created_at(self) -> int | None:
        """Smallest created_at over all entries, None when empty."""

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        """Set (or with None remove) a namespace's quota."""

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        """Add to the persisted per-namespace counters (names in COUNTER_NAMES)."""

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        """Persisted counters of one namespace, or summed over all when None."""


@runtime_checkable
class ChangeTrackingStore(BatchStore, Protocol):
    """A store that remembers the version at which each row was last written.

    With it, a cache in ``stale-tolerant`` mode catches up with other processes by
    fetching only what changed instead of reloading every vector.
    """

    def iter_changed_vectors(self, since_version: int) -> Iterator[tuple[int, str, bytes]]:
        """(id, namespace, embedding) of rows inserted or replaced at a version
        greater than ``since_version``, id ascending. Deleted rows are not reported."""


@runtime_checkable
class VectorSearchStore(BatchStore, Protocol):
    """A store that answers nearest-neighbour queries itself.

    When the cache's store has this capability it builds no in-process index: open time
    and process memory do not grow with the number of entries, and every process sees
    every write at once.
    """

    index_label: str
    """Name reported as ``Health.index_backend``, e.g. "pgvector"."""

    @property
    def vector_search_enabled(self) -> bool:
        """True once the store is open and will answer ``search``; a store that can
        fall back to plain storage (e.g. pgvector missing) reports False and the
        cache builds its in-process index instead."""

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], *, k: int, now: int
    ) -> list[tuple[StoredEntry, float]]:
        """The ``k`` nearest non-expired entries of ``namespace`` to the unit
        ``vector`` with their cosine similarity, best first. Entries with a zero
        embedding are never returned."""


@runtime_checkable
class LookupStore(VectorSearchStore, Protocol):
    """A searching store that can answer both layers in one round trip, and that
    reads only the entries a lookup can use: both calls take ``min_similarity``."""

    def search(
        self,
        namespace: str,
        vector: npt.NDArray[np.float32],
        *,
        k: int,
        now: int,
        min_similarity: float | None = None,
    ) -> Candidates:
        """As ``VectorSearchStore.search``. Of the ``k`` nearest, those below
        ``min_similarity`` are left out (their entries are not read), and the result's
        ``below`` says whether one was: the cache's threshold, so that only a neighbour
        it could serve costs a read."""

    def lookup(
        self,
        namespace: str,
        query_hash: str,
        vector: npt.NDArray[np.float32],
        *,
        k: int,
        now: int,
        min_similarity: float | None = None,
    ) -> tuple[StoredEntry | None, Candidates]:
        """The entry stored under ``query_hash`` (expired or not, as ``get_by_hash``)
        and what ``search`` would return for ``vector``, from one statement."""


@runtime_checkable
class CounterBatchStore(BatchStore, Protocol):
    """A store that writes the counters of many namespaces in one transaction.

    The cache writes its counters every few dozen events; a store whose commits cost
    (a round trip and a WAL flush each) takes all namespaces at once with this
    instead of one ``add_counters`` each."""

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """``add_counters`` for each namespace of ``deltas``, in one transaction."""


@runtime_checkable
class ChunkedInsertStore(BatchStore, Protocol):
    """A store that starts writing a batch before the whole batch is made.

    ``put_many`` checks its items and builds their entries chunk by chunk; such a store
    takes each chunk only when it is ready to write it, and where it can, while its
    server writes the one before, so the cache's work and the server's overlap."""

    def insert_chunks(self, chunks: Iterable[Sequence[StoredEntry]]) -> list[int]:
        """``insert_many`` of the entries ``chunks`` yields, in one transaction; ids in
        input order. An exception raised by ``chunks`` propagates as it is, and then
        nothing of the batch is stored."""
