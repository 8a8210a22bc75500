"""MemoryStore: entries in a dict, for tests and short-lived processes."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from mneme._errors import (
    CacheClosedError,
    CheckpointError,
    StoreBackendError,
)
from mneme._types import StoredEntry
from mneme.stores.common import check_embedder
from mneme.stores.protocol import COUNTER_NAMES

__all__ = ["MemoryStore"]


def _copy(entry: StoredEntry) -> StoredEntry:
    """Entries share no mutable state with callers, as if they came from a disk."""
    if entry.metadata is None:
        return entry
    return replace(entry, metadata=copy.deepcopy(entry.metadata))


class MemoryStore:
    """Keeps everything in process memory; nothing survives the process.

    ``max_entries`` bounds the store itself: an insert beyond it raises
    ``StoreBackendError`` (mentioning "capacity"). The cache's own ``max_entries``
    evicts before that happens, so set this only as a hard safety limit.
    """

    backend_label = "memory"
    schema_version = 1

    def __init__(self, *, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1 or None")
        self._max_entries = max_entries
        self._lock = threading.RLock()
        self._open = False
        self._closed = False  # once closed, a store stays closed
        self._rows: dict[int, StoredEntry] = {}
        self._by_hash: dict[tuple[str, str], int] = {}
        self._next_id = 1
        self._version = 0
        self._meta: dict[str, str] = {}
        self._quotas: dict[str, int] = {}
        self._counters: dict[str, dict[str, int]] = {}
        self._changed: dict[int, int] = {}  # id -> version it was last written at

    def _check(self) -> None:
        if not self._open:
            raise CacheClosedError(f"MemoryStore is {'closed' if self._closed else 'not open'}")

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        with self._lock:
            if self._closed:
                raise CacheClosedError("MemoryStore is closed: its entries went with it")
            check_embedder(
                self._meta.get("embedder_fingerprint"),
                int(self._meta["embedder_dim"]) if "embedder_dim" in self._meta else None,
                embedder_fingerprint,
                embedder_dim,
                "this MemoryStore",
            )
            self._meta.setdefault("embedder_fingerprint", embedder_fingerprint)
            self._meta.setdefault("embedder_dim", str(embedder_dim))
            self._open = True

    def close(self) -> None:
        """Close the store; its entries are dropped (nothing outlives a MemoryStore)."""
        with self._lock:
            self._open = False
            self._closed = True
            self._rows.clear()
            self._by_hash.clear()
            self._changed.clear()

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        with self._lock:
            self._check()
            id_ = self._by_hash.get((namespace, query_hash))
            return None if id_ is None else _copy(self._rows[id_])

    def get_by_id(self, id: int) -> StoredEntry | None:
        with self._lock:
            self._check()
            row = self._rows.get(id)
            return None if row is None else _copy(row)

    def count(self, namespace: str | None = None) -> int:
        with self._lock:
            self._check()
            if namespace is None:
                return len(self._rows)
            return sum(1 for e in self._rows.values() if e.namespace == namespace)

    def list_namespaces(self) -> list[str]:
        with self._lock:
            self._check()
            return sorted({e.namespace for e in self._rows.values()})

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        with self._lock:
            self._check()
            rows = [e for e in self._rows.values() if namespace is None or e.namespace == namespace]
            rows.sort(key=lambda e: (e.last_accessed_at, e.id))
            return [e.id for e in rows[: max(n, 0)]]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        with self._lock:
            self._check()
            rows = [_copy(self._rows[i]) for i in sorted(self._rows) if i > last_id]
        return iter(rows)

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        return ((e.id, e.namespace, e.embedding) for e in self.iter_since(after_id))

    def iter_changed_vectors(self, since_version: int) -> Iterator[tuple[int, str, bytes]]:
        with self._lock:
            self._check()
            rows = [
                (i, self._rows[i].namespace, self._rows[i].embedding)
                for i in sorted(self._rows)
                if self._changed.get(i, 0) > since_version
            ]
        return iter(rows)

    def insert(self, entry: StoredEntry) -> int:
        with self._lock:
            self._check()
            key = (entry.namespace, entry.query_hash)
            id_ = self._by_hash.get(key)
            if id_ is None:
                if self._max_entries is not None and len(self._rows) >= self._max_entries:
                    raise StoreBackendError(
                        f"MemoryStore is at capacity ({self._max_entries} entries); "
                        "raise max_entries or let the cache evict sooner"
                    )
                id_ = self._next_id
                self._next_id += 1
                self._by_hash[key] = id_
            self._rows[id_] = replace(_copy(entry), id=id_)
            self._version += 1
            self._changed[id_] = self._version
            return id_

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        with self._lock:
            self._check()
            ids = [self.insert(e) for e in entries]
            # A later duplicate replaced an earlier one in place, so all share its id.
            return ids

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        with self._lock:
            self._check()
            found = {h: self._by_hash.get((namespace, h)) for h in query_hashes}
            return {h: _copy(self._rows[i]) for h, i in found.items() if i is not None}

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        with self._lock:
            self._check()
            counts: dict[str, int] = {}
            present = [i for i in dict.fromkeys(ids) if i in self._rows]
            for id_ in present:
                ns = self._rows[id_].namespace
                counts[ns] = counts.get(ns, 0) + 1
            self._delete_where(present)
            return counts

    def oldest_created_at(self) -> int | None:
        with self._lock:
            self._check()
            return min((e.created_at for e in self._rows.values()), default=None)

    def update_access(self, id: int, now: int) -> None:
        with self._lock:
            self._check()
            row = self._rows.get(id)
            if row is not None:
                self._rows[id] = replace(
                    row, last_accessed_at=now, access_count=row.access_count + 1
                )

    def delete_by_id(self, id: int) -> bool:
        with self._lock:
            self._check()
            row = self._rows.pop(id, None)
            if row is None:
                return False
            self._changed.pop(id, None)
            del self._by_hash[(row.namespace, row.query_hash)]
            self._version += 1
            return True

    def _delete_where(self, ids: list[int]) -> int:
        for id_ in ids:
            row = self._rows.pop(id_)
            self._changed.pop(id_, None)
            del self._by_hash[(row.namespace, row.query_hash)]
        if ids:
            self._version += 1
        return len(ids)

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        with self._lock:
            self._check()
            return self._delete_where(
                [
                    e.id
                    for e in self._rows.values()
                    if e.is_expired(now) and (namespace is None or e.namespace == namespace)
                ]
            )

    def clear_namespace(self, namespace: str) -> int:
        with self._lock:
            self._check()
            return self._delete_where(
                [e.id for e in self._rows.values() if e.namespace == namespace]
            )

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        with self._lock:
            self._check()
            if max_entries is None:
                self._quotas.pop(namespace, None)
            else:
                self._quotas[namespace] = max_entries

    def get_namespace_quota(self, namespace: str) -> int | None:
        with self._lock:
            self._check()
            return self._quotas.get(namespace)

    def read_version_counter(self) -> int:
        with self._lock:
            self._check()
            return self._version

    def read_meta(self, key: str) -> str | None:
        with self._lock:
            self._check()
            return self._meta.get(key)

    def write_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._check()
            self._meta[key] = value

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self.add_counters_many({namespace: deltas})

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        with self._lock:
            self._check()
            for namespace, named in deltas.items():
                counters = self._counters.setdefault(namespace, dict.fromkeys(COUNTER_NAMES, 0))
                for name, delta in named.items():
                    counters[name] = counters.get(name, 0) + delta

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        with self._lock:
            self._check()
            total = dict.fromkeys(COUNTER_NAMES, 0)
            for ns, counters in self._counters.items():
                if namespace is None or ns == namespace:
                    for name, value in counters.items():
                        total[name] = total.get(name, 0) + value
            return total

    def integrity_check(self) -> bool:
        with self._lock:
            self._check()
            return all(
                self._by_hash[(e.namespace, e.query_hash)] == i for i, e in self._rows.items()
            )

    def snapshot_to(self, dest_path: str) -> None:
        if self._closed:
            raise CacheClosedError("MemoryStore is closed")
        raise CheckpointError("MemoryStore keeps nothing on disk; use SemanticCache.dumps instead")

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> None:
        raise CheckpointError("MemoryStore keeps nothing on disk; use SemanticCache.loads instead")
