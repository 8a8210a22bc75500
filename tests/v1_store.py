"""A custom store written to mneme 1.0's ``Store`` protocol, as a 1.0 user would have.

It has exactly the methods 1.0 documents: no batch methods, no ``backend_label`` or
``schema_version``, ``iter_*`` that return plain lists, ``set_namespace_quota`` that
takes an int, ``restore_from`` that returns a store. Its data lives in a ``Tables``
object so that two handles can share it (a reopen), and it records the name of every
method called, so tests can check what the cache asked of it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from mneme import CacheClosedError, CheckpointError, EmbedderDimensionError, EmbedderMismatchError
from mneme._types import StoredEntry


@dataclass
class Tables:
    rows: dict[int, StoredEntry] = field(default_factory=dict)
    by_hash: dict[tuple[str, str], int] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    next_id: int = 1
    version: int = 0


class LegacyDictStore:
    """Dict-backed, thread-safe through one lock, as 1.0's MemoryStore was."""

    def __init__(self, tables: Tables | None = None) -> None:
        self.tables = tables if tables is not None else Tables()
        self.calls: list[str] = []
        self._lock = threading.RLock()
        self._state = "new"

    def _use(self, name: str) -> Tables:
        self.calls.append(name)
        if self._state != "open":
            raise CacheClosedError(f"LegacyDictStore is {self._state}")
        return self.tables

    # --- lifecycle ---

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        with self._lock:
            self.calls.append("open")
            if self._state == "closed":
                raise CacheClosedError("LegacyDictStore is closed")
            meta = self.tables.meta
            if "embedder_fingerprint" not in meta:
                meta["embedder_fingerprint"] = embedder_fingerprint
                meta["embedder_dim"] = str(embedder_dim)
                meta["schema_version"] = "1"
            elif meta["embedder_fingerprint"] != embedder_fingerprint:
                raise EmbedderMismatchError("another embedder wrote this store; reembed")
            elif int(meta["embedder_dim"]) != embedder_dim:
                raise EmbedderDimensionError("another dim; reembed")
            self._state = "open"

    def close(self) -> None:
        with self._lock:
            self.calls.append("close")
            self._state = "closed"

    # --- read ---

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        with self._lock:
            t = self._use("get_by_hash")
            id_ = t.by_hash.get((namespace, query_hash))
            return None if id_ is None else t.rows[id_]

    def get_by_id(self, id: int) -> StoredEntry | None:
        with self._lock:
            return self._use("get_by_id").rows.get(id)

    def count(self, namespace: str | None = None) -> int:
        with self._lock:
            rows = self._use("count").rows.values()
            return sum(1 for e in rows if namespace is None or e.namespace == namespace)

    def list_namespaces(self) -> list[str]:
        with self._lock:
            return sorted({e.namespace for e in self._use("list_namespaces").rows.values()})

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        with self._lock:
            rows = [
                e
                for e in self._use("iter_lru_ids").rows.values()
                if namespace is None or e.namespace == namespace
            ]
            rows.sort(key=lambda e: (e.last_accessed_at, e.id))
            return [e.id for e in rows[: max(n, 0)]]

    def iter_all(self) -> list[StoredEntry]:
        with self._lock:
            t = self._use("iter_all")
            return [t.rows[i] for i in sorted(t.rows)]

    def iter_since(self, last_id: int) -> list[StoredEntry]:
        with self._lock:
            t = self._use("iter_since")
            return [t.rows[i] for i in sorted(t.rows) if i > last_id]

    # --- write ---

    def insert(self, entry: StoredEntry) -> int:
        with self._lock:
            t = self._use("insert")
            id_ = t.by_hash.get((entry.namespace, entry.query_hash))
            if id_ is None:
                id_, t.next_id = t.next_id, t.next_id + 1
            t.by_hash[(entry.namespace, entry.query_hash)] = id_
            t.rows[id_] = replace(entry, id=id_)
            t.version += 1
            return id_

    def update_access(self, id: int, now: int) -> None:
        with self._lock:
            t = self._use("update_access")
            e = t.rows.get(id)
            if e is not None:
                t.rows[id] = replace(e, last_accessed_at=now, access_count=e.access_count + 1)

    def delete_by_id(self, id: int) -> bool:
        with self._lock:
            t = self._use("delete_by_id")
            if (e := t.rows.pop(id, None)) is None:
                return False
            del t.by_hash[(e.namespace, e.query_hash)]
            t.version += 1
            return True

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        with self._lock:
            t = self._use("delete_expired")
            gone = [
                e.id
                for e in t.rows.values()
                if e.ttl is not None
                and now - e.created_at >= e.ttl
                and (namespace is None or e.namespace == namespace)
            ]
            self._drop(t, gone)
            return len(gone)

    def clear_namespace(self, namespace: str) -> int:
        with self._lock:
            t = self._use("clear_namespace")
            gone = [e.id for e in t.rows.values() if e.namespace == namespace]
            self._drop(t, gone)
            return len(gone)

    @staticmethod
    def _drop(t: Tables, ids: list[int]) -> None:
        for id_ in ids:
            e = t.rows.pop(id_)
            del t.by_hash[(e.namespace, e.query_hash)]
        t.version += bool(ids)

    # --- quotas, coordination, health, backup ---

    def set_namespace_quota(self, namespace: str, max_entries: int) -> None:
        with self._lock:
            self._use("set_namespace_quota").quotas[namespace] = max_entries

    def get_namespace_quota(self, namespace: str) -> int | None:
        with self._lock:
            return self._use("get_namespace_quota").quotas.get(namespace)

    def read_version_counter(self) -> int:
        with self._lock:
            return self._use("read_version_counter").version

    def read_meta(self, key: str) -> str | None:
        with self._lock:
            return self._use("read_meta").meta.get(key)

    def write_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._use("write_meta").meta[key] = value

    def integrity_check(self) -> bool:
        with self._lock:
            self._use("integrity_check")
            return True

    def snapshot_to(self, dest_path: str | Path) -> None:
        raise CheckpointError("LegacyDictStore keeps no files")

    @classmethod
    def restore_from(cls, source_path: str | Path, dest_path: str | Path) -> LegacyDictStore:
        raise CheckpointError("LegacyDictStore keeps no files")


BATCH_METHODS = (
    "insert_many",
    "get_many_by_hash",
    "delete_many",
    "iter_vectors",
    "oldest_created_at",
    "add_counters",
    "read_counters",
)
