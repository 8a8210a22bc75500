"""SemanticCache: the synchronous cache shell. Rules live in _core/_policy; this
module only moves data between the embedder, the index and the store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._core import (
    CacheConfig,
    Counters,
    PreparedPut,
    build_entry,
    decide_semantic,
    dedupe_batch,
    embedder_vector,
    emit,
    exact_hit,
    prepare_put,
)
from ._dump import read_dump, write_dump
from ._embedder import BatchEmbedder, Embedder
from ._errors import CacheClosedError, EmbedderDimensionError, MultiProcessLockError
from ._index import Index, check_dtype, make_index
from ._policy import (
    TOP_K,
    check_namespace,
    check_threshold,
    eviction_batch,
    from_bytes,
    unit_vector,
)
from ._store import Store, VectorSearchStore
from ._store_sqlite import SQLiteStore
from ._types import (
    ConfidenceFn,
    Health,
    Hit,
    IndexBackend,
    MetricsHook,
    MultiProcessMode,
    Stats,
    StoredEntry,
    Validator,
    VectorDtype,
)

log = logging.getLogger("mneme")

__all__ = ["SemanticCache"]


class SemanticCache:
    """A two-layer cache of text -> response, persisted in a store.

    Layer 1 answers exact repeats of a normalised query; Layer 2 answers queries whose
    embedding is within ``similarity_threshold`` (cosine) of a stored one. Thread-safe.
    """

    def __init__(
        self,
        path: str | None = None,
        embedder: Embedder | None = None,
        *,
        store: Store | None = None,
        similarity_threshold: float = 0.85,
        default_ttl: float | None = None,
        max_entries: int | None = None,
        namespace_quotas: Mapping[str, int] | None = None,
        confidence_fn: ConfidenceFn | None = None,
        validator: Validator | None = None,
        metrics_hook: MetricsHook | None = None,
        normalize: bool = True,
        index_backend: IndexBackend = "auto",
        index_options: Mapping[str, int] | None = None,
        vector_dtype: VectorDtype = "float32",
        multi_process_mode: MultiProcessMode = "single",
        stale_check_interval: float = 0.0,
        max_query_bytes: int = 32_768,
        max_response_bytes: int = 4_194_304,
        max_metadata_bytes: int = 65_536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (path is None) == (store is None):
            raise ValueError("SemanticCache needs exactly one of path= or store=")
        if embedder is None:
            raise ValueError("SemanticCache needs an embedder (embedder=...)")
        self._config = CacheConfig.build(
            similarity_threshold=similarity_threshold,
            default_ttl=default_ttl,
            max_entries=max_entries,
            namespace_quotas=namespace_quotas,
            confidence_fn=confidence_fn,
            validator=validator,
            metrics_hook=metrics_hook,
            normalize=normalize,
            index_backend=index_backend,
            index_options=index_options,
            vector_dtype=vector_dtype,
            multi_process_mode=multi_process_mode,
            stale_check_interval=stale_check_interval,
            max_query_bytes=max_query_bytes,
            max_response_bytes=max_response_bytes,
            max_metadata_bytes=max_metadata_bytes,
        )
        if multi_process_mode == "mmap-shared":
            raise MultiProcessLockError(
                "multi_process_mode='mmap-shared' is not supported by this version; use "
                "'stale-tolerant' (in-process index kept current by polling) or a store "
                "with server-side search (PostgresStore(use_pgvector=True))"
            )
        self._embedder = embedder
        self._dim = int(embedder.dim)
        self._clock = clock
        self._lock = threading.RLock()
        self._counters = Counters()
        self._threshold = self._config.similarity_threshold
        self._store: Store = store if store is not None else SQLiteStore(path)  # type: ignore[arg-type]
        self._store.open(embedder.fingerprint, self._dim)
        self._closed = False
        self._quotas: dict[str, int | None] = {}
        try:
            for ns, quota in self._config.namespace_quotas.items():
                self._store.set_namespace_quota(ns, quota)
                self._quotas[ns] = quota
            self._search_store = isinstance(self._store, VectorSearchStore)
            self._index: Index | None = None
            self._seen_version = 0
            self._last_id = 0
            self._last_stale_check = 0.0
            if not self._search_store:
                self._index = self._build_index()
        except BaseException:
            self._store.close()
            raise

    # -- lifecycle -------------------------------------------------------------

    def _build_index(self) -> Index:
        store = self._store
        self._seen_version = store.read_version_counter()
        index = make_index(
            self._config.index_backend,
            self._dim,
            self._config.vector_dtype,
            store.count(),
            self._config.index_options,
        )
        self._last_id = self._load_vectors(index, 0)
        return index

    def _load_vectors(self, index: Index, after_id: int) -> int:
        """Feed the index from the store in batches; returns the highest id seen."""
        ids: list[int] = []
        namespaces: list[str] = []
        blobs: list[bytes] = []
        last = after_id

        def flush() -> None:
            if ids:
                matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), self._dim)
                index.add(ids, namespaces, matrix.astype(np.float32))
                ids.clear()
                namespaces.clear()
                blobs.clear()

        for id_, ns, blob in self._store.iter_vectors(after_id):
            if len(blob) != 4 * self._dim:
                log.warning("mneme: entry %d has an embedding of the wrong size; skipped", id_)
                continue
            ids.append(id_)
            namespaces.append(ns)
            blobs.append(blob)
            last = max(last, id_)
            if len(ids) >= 8192:
                flush()
        flush()
        return last

    def close(self) -> None:
        """Flush counters and close the store; idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_counters()
            finally:
                self._closed = True
                self._index = None
                self._store.close()

    def __enter__(self) -> SemanticCache:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("this SemanticCache is closed")

    def _now(self) -> int:
        return int(self._clock())

    # -- lookup ----------------------------------------------------------------

    def get(
        self,
        query: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        bypass: bool = False,
    ) -> Hit | None:
        """Look the query up: exact first, then semantic. ``bypass=True`` skips the
        cache (returns None and counts nothing), e.g. to force a fresh answer."""
        self._check_open()
        ns = check_namespace(namespace)
        text, qhash = self._config.key(query)
        if bypass:
            return None
        with self._lock:
            self._check_open()
            self._maybe_catch_up()
            hit = self._lookup_exact(ns, self._store.get_by_hash(ns, qhash))
        if hit is not None:
            return hit
        vector, reason = self._query_vector(text, embedding)
        return self._lookup_semantic(ns, vector, reason)

    def get_many(self, queries: Sequence[str], *, namespace: str = "default") -> list[Hit | None]:
        """``get`` for a batch: one exact lookup for all, one embedder call for the
        rest when the embedder has ``embed_many``. Same results as a loop."""
        self._check_open()
        ns = check_namespace(namespace)
        keys = [self._config.key(q) for q in queries]
        results: list[Hit | None] = [None] * len(keys)
        with self._lock:
            self._check_open()
            self._maybe_catch_up()
            found = self._store.get_many_by_hash(ns, list(dict.fromkeys(h for _, h in keys)))
            pending: list[int] = []
            for i, (_, qhash) in enumerate(keys):
                entry = found.get(qhash)
                results[i] = self._lookup_exact(ns, entry)
                if results[i] is None:
                    pending.append(i)
                    found.pop(qhash, None)  # expired or gone: later repeats miss too
        vectors = self._embed_batch([keys[i][0] for i in pending])
        for i, (vector, reason) in zip(pending, vectors, strict=True):
            # A repeat of a query served semantically earlier in the batch is
            # answered exactly as the loop would: the store has not changed.
            results[i] = self._lookup_semantic(ns, vector, reason)
        return results

    def _lookup_exact(self, ns: str, entry: StoredEntry | None) -> Hit | None:
        if entry is None:
            return None
        now = self._now()
        if entry.is_expired(now):
            self._delete_ids([entry.id], expired=True)
            return None
        self._store.update_access(entry.id, now)
        hit = exact_hit(entry, now)
        self._record_hit(hit)
        return hit

    def _query_vector(
        self, text: str, embedding: npt.ArrayLike | None
    ) -> tuple[npt.NDArray[np.float32] | None, str | None]:
        if embedding is not None:
            try:
                return unit_vector(embedding, self._dim), None
            except EmbedderDimensionError:
                return None, "dim_mismatch"
            except ValueError:
                return None, "invalid_embedding"
        try:
            raw = self._embedder.embed(text)
        except Exception:
            log.exception("mneme: embedder failed on get; counting a miss")
            return None, "embedder_failure"
        try:
            return unit_vector(raw, self._dim), None
        except EmbedderDimensionError:
            return None, "dim_mismatch"
        except ValueError:
            return None, "embedder_failure"

    def _embed_batch(
        self, texts: list[str]
    ) -> list[tuple[npt.NDArray[np.float32] | None, str | None]]:
        if not texts:
            return []
        if isinstance(self._embedder, BatchEmbedder):
            try:
                matrix = np.asarray(self._embedder.embed_many(texts))
            except Exception:
                log.exception("mneme: embedder failed on get_many; counting misses")
                return [(None, "embedder_failure")] * len(texts)
            if matrix.ndim == 2 and matrix.shape[0] == len(texts):
                return [self._query_vector_from(row) for row in matrix]
        return [self._query_vector(t, None) for t in texts]

    def _query_vector_from(
        self, raw: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.float32] | None, str | None]:
        try:
            return unit_vector(raw, self._dim), None
        except EmbedderDimensionError:
            return None, "dim_mismatch"
        except ValueError:
            return None, "embedder_failure"

    def _lookup_semantic(
        self, ns: str, vector: npt.NDArray[np.float32] | None, reason: str | None
    ) -> Hit | None:
        with self._lock:
            self._check_open()
            if vector is None or not np.any(vector):
                self._record_miss(ns, reason or "no_match")
                return None
            now = self._now()
            decision = decide_semantic(
                self._config, self._candidates(ns, vector, now), now, self._threshold
            )
            if decision.expired:
                self._delete_ids(decision.expired, expired=True)
            if decision.invalid:
                self._delete_ids(decision.invalid, expired=False)
            if decision.hit is None or decision.hit_id is None:
                self._record_miss(ns, decision.miss_reason or "no_match")
                return None
            self._store.update_access(decision.hit_id, now)
            self._record_hit(decision.hit)
            return decision.hit

    def _candidates(
        self, ns: str, vector: npt.NDArray[np.float32], now: int
    ) -> list[tuple[StoredEntry, float]]:
        if self._search_store:
            return self._store.search(ns, vector, k=TOP_K, now=now)  # type: ignore[attr-defined,no-any-return]
        assert self._index is not None
        out: list[tuple[StoredEntry, float]] = []
        for id_, similarity in self._index.search(ns, vector, TOP_K):
            entry = self._store.get_by_id(id_)
            if entry is None or entry.namespace != ns:
                self._index.remove(id_)  # deleted by another process or by vacuum
                continue
            out.append((entry, similarity))
        return out

    # -- writes ----------------------------------------------------------------

    def put(
        self,
        query: str,
        response: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        """Store (or replace) the response for a query. Everything is validated
        before anything is stored."""
        self._check_open()
        p = prepare_put(
            self._config,
            query,
            response,
            namespace=namespace,
            metadata=metadata,
            ttl=ttl,
            embedding=embedding,
            dim=self._dim,
        )
        vector = p.embedding if p.embedding is not None else self._embed_for_put(p.text)
        with self._lock:
            self._check_open()
            entry = build_entry(p, vector, self._now())
            id_ = self._store.insert(entry)
            if self._index is not None:
                self._index.add([id_], [p.namespace], vector.reshape(1, -1))
            self._after_write({p.namespace})

    def put_many(self, items: Iterable[Mapping[str, Any]], *, namespace: str = "default") -> None:
        """``put`` for a batch: all items are validated first (nothing is stored if
        one is bad), embedded with one ``embed_many`` call when the embedder has it,
        and written in one store transaction. Keys: query, response, and optionally
        embedding, metadata, ttl, namespace."""
        self._check_open()
        prepared: list[PreparedPut] = []
        for n, item in enumerate(items):
            unknown = set(item) - {"query", "response", "embedding", "metadata", "ttl", "namespace"}
            if unknown or "query" not in item or "response" not in item:
                raise ValueError(
                    f"put_many item {n} needs keys 'query' and 'response' (optional: "
                    f"embedding, metadata, ttl, namespace); unknown: {sorted(unknown)}"
                )
            prepared.append(
                prepare_put(
                    self._config,
                    item["query"],
                    item["response"],
                    namespace=item.get("namespace", namespace),
                    metadata=item.get("metadata"),
                    ttl=item.get("ttl"),
                    embedding=item.get("embedding"),
                    dim=self._dim,
                )
            )
        if not prepared:
            return
        vectors = self._embed_many_for_put([p for p in prepared if p.embedding is None])
        with self._lock:
            self._check_open()
            now = self._now()
            entries = dedupe_batch(
                [
                    build_entry(p, p.embedding if p.embedding is not None else vectors[id(p)], now)
                    for p in prepared
                ]
            )
            ids = self._store.insert_many(entries)
            if self._index is not None:
                self._index.add(
                    ids,
                    [e.namespace for e in entries],
                    np.stack([from_bytes(e.embedding) for e in entries]),
                )
            self._after_write({e.namespace for e in entries})

    def _embed_for_put(self, text: str) -> npt.NDArray[np.float32]:
        return embedder_vector(self._embedder.embed(text), self._dim)

    def _embed_many_for_put(self, todo: list[PreparedPut]) -> dict[int, npt.NDArray[np.float32]]:
        if not todo:
            return {}
        if isinstance(self._embedder, BatchEmbedder):
            matrix = np.asarray(self._embedder.embed_many([p.text for p in todo]))
            if matrix.ndim != 2 or matrix.shape[0] != len(todo):
                raise EmbedderDimensionError(
                    f"embed_many returned shape {matrix.shape} for {len(todo)} texts; "
                    f"expected ({len(todo)}, {self._dim}) (dim mismatch)"
                )
            return {
                id(p): embedder_vector(row, self._dim) for p, row in zip(todo, matrix, strict=True)
            }
        return {id(p): self._embed_for_put(p.text) for p in todo}

    def delete(self, query: str, *, namespace: str = "default") -> bool:
        """Remove the entry for this exact (normalised) query; True if there was one."""
        self._check_open()
        ns = check_namespace(namespace)
        _, qhash = self._config.key(query)
        with self._lock:
            self._check_open()
            entry = self._store.get_by_hash(ns, qhash)
            if entry is None:
                return False
            deleted = self._store.delete_by_id(entry.id)
            if self._index is not None:
                self._index.remove(entry.id)
            return deleted

    def _delete_ids(self, ids: Sequence[int], *, expired: bool) -> None:
        counts = self._store.delete_many(ids)
        if self._index is not None:
            for id_ in ids:
                self._index.remove(id_)
        if expired:
            for ns, n in counts.items():
                self._counters.add(ns, "expirations", n)
                emit(self._config.metrics_hook, "expired", {"namespace": ns, "count": n})

    def _after_write(self, namespaces: set[str]) -> None:
        """Evict what quotas and max_entries demand, then flush counters."""
        over_quota = False
        for ns in sorted(namespaces):
            quota = self._quota(ns)
            if quota is not None:
                over_quota |= self._evict(ns, quota)
        if not over_quota and self._config.max_entries is not None:
            self._evict(None, self._config.max_entries)
        self._flush_counters()

    def _quota(self, ns: str) -> int | None:
        if ns not in self._quotas:
            self._quotas[ns] = self._store.get_namespace_quota(ns)
        return self._quotas[ns]

    def _evict(self, ns: str | None, cap: int) -> bool:
        batch = eviction_batch(self._store.count(ns), cap)
        if not batch:
            return False
        ids = self._store.iter_lru_ids(batch, ns)
        counts = self._store.delete_many(ids)
        if self._index is not None:
            for id_ in ids:
                self._index.remove(id_)
        for evicted_ns, n in counts.items():
            self._counters.add(evicted_ns, "evictions", n)
            emit(self._config.metrics_hook, "eviction", {"namespace": evicted_ns, "count": n})
        return True

    # -- counters and metrics --------------------------------------------------

    def _record_hit(self, hit: Hit) -> None:
        name = "hits_exact" if hit.layer == "exact" else "hits_semantic"
        self._counters.add(hit.namespace, name)
        emit(
            self._config.metrics_hook,
            "hit",
            {
                "namespace": hit.namespace,
                "layer": hit.layer,
                "similarity": hit.similarity,
                "confidence": hit.confidence,
                "age_seconds": hit.age_seconds,
            },
        )
        if self._counters.should_flush():
            self._flush_counters()

    def _record_miss(self, ns: str, reason: str) -> None:
        self._counters.add(ns, "misses")
        emit(self._config.metrics_hook, "miss", {"namespace": ns, "reason": reason})
        if self._counters.should_flush():
            self._flush_counters()

    def _flush_counters(self) -> None:
        pending = self._counters.take()
        try:
            for ns, deltas in pending.items():
                self._store.add_counters(ns, deltas)
        except Exception:
            self._counters.restore(pending)
            raise

    # -- multi-process ---------------------------------------------------------

    def _maybe_catch_up(self) -> None:
        """stale-tolerant mode: follow other processes' writes by polling the
        store's version counter at most every stale_check_interval seconds."""
        if self._config.multi_process_mode != "stale-tolerant" or self._index is None:
            return
        now = time.monotonic()
        if now - self._last_stale_check < self._config.stale_check_interval:
            return
        self._last_stale_check = now
        version = self._store.read_version_counter()
        if version == self._seen_version:
            return
        # Inserts arrive as new ids; replacements and deletions do not, so rebuild
        # membership from the store's id list and reload what changed.
        self._index = self._build_index()

    # -- maintenance and introspection -----------------------------------------

    def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """Delete expired entries (in one namespace or all); returns how many."""
        self._check_open()
        with self._lock:
            self._check_open()
            now = self._now()
            namespaces = (
                [check_namespace(namespace)]
                if namespace is not None
                else self._store.list_namespaces()
            )
            total = 0
            for ns in namespaces:
                n = self._store.delete_expired(now, ns)
                if n:
                    total += n
                    self._counters.add(ns, "expirations", n)
                    emit(self._config.metrics_hook, "expired", {"namespace": ns, "count": n})
            if total and self._index is not None:
                self._prune_index()
            if compact and self._index is not None:
                self._index.compact()
            self._flush_counters()
            return total

    def _prune_index(self) -> None:
        """Drop index rows whose entries the store no longer has."""
        assert self._index is not None
        self._index = self._build_index()

    def compact(self) -> int:
        """Drop the in-process index's tombstones; returns how many."""
        self._check_open()
        with self._lock:
            return 0 if self._index is None else self._index.compact()

    def stats(self, *, namespace: str | None = None) -> Stats:
        self._check_open()
        ns = None if namespace is None else check_namespace(namespace)
        with self._lock:
            self._check_open()
            counters = self._store.read_counters(ns)
            for name, n in self._counters.peek(ns).items():
                counters[name] = counters.get(name, 0) + n
            entries = self._store.count(ns)
            index = self._index
            index_bytes = None if index is None else index.memory_bytes
            return Stats(
                namespace=ns,
                entries=entries,
                hits_exact=counters.get("hits_exact", 0),
                hits_semantic=counters.get("hits_semantic", 0),
                misses=counters.get("misses", 0),
                evictions=counters.get("evictions", 0),
                expirations=counters.get("expirations", 0),
                embedder_fingerprint=self._embedder.fingerprint,
                vector_dtype=self._config.vector_dtype,  # type: ignore[arg-type]
                memory_bytes_estimate=index_bytes or 0,
                index_memory_bytes=index_bytes,
                index_tombstone_count=None if index is None else index.tombstone_count,
            )

    def health(self) -> Health:
        self._check_open()
        with self._lock:
            self._check_open()
            store = self._store
            try:
                integrity = store.integrity_check()
            except Exception:
                log.exception("mneme: integrity check failed")
                integrity = False
            fingerprint_ok = store.read_meta("embedder_fingerprint") == self._embedder.fingerprint
            oldest = store.oldest_created_at()
            label = (
                store.index_label
                if self._search_store
                # type: ignore[attr-defined]
                else (self._index.backend_label if self._index is not None else "none")
            )
            return Health(
                healthy=integrity and fingerprint_ok,
                schema_version=store.schema_version,
                integrity_ok=integrity,
                embedder_fingerprint_match=fingerprint_ok,
                entries=store.count(),
                namespaces=len(store.list_namespaces()),
                oldest_entry_age_seconds=None
                if oldest is None
                else float(max(self._now() - oldest, 0)),
                index_backend=label,
                store_backend=store.backend_label,
                vector_dtype=self._config.vector_dtype,  # type: ignore[arg-type]
                multi_process_mode=self._config.multi_process_mode,  # type: ignore[arg-type]
            )

    def list_namespaces(self) -> list[str]:
        self._check_open()
        with self._lock:
            return self._store.list_namespaces()

    def clear_namespace(self, namespace: str) -> int:
        self._check_open()
        ns = check_namespace(namespace)
        with self._lock:
            self._check_open()
            n = self._store.clear_namespace(ns)
            if self._index is not None:
                self._index.remove_namespace(ns)
            return n

    def clear(self) -> int:
        self._check_open()
        with self._lock:
            return sum(self.clear_namespace(ns) for ns in self._store.list_namespaces())

    def requantize(self, dtype: VectorDtype) -> None:
        """Rebuild the in-process index with another in-memory vector dtype."""
        self._check_open()
        check_dtype(dtype)
        with self._lock:
            self._config.vector_dtype = dtype
            if self._index is not None:
                self._index = self._build_index()

    @property
    def similarity_threshold(self) -> float:
        return self._threshold

    def set_similarity_threshold(self, value: float) -> None:
        self._threshold = check_threshold(value)

    # -- portable dumps --------------------------------------------------------

    def dumps(self, dest: str) -> int:
        """Write every entry to a portable file (JSON lines); returns how many."""
        self._check_open()
        with self._lock:
            self._check_open()
            return write_dump(dest, self._embedder.fingerprint, self._dim, self._store.iter_all())

    @classmethod
    def loads(cls, source: str, path: str, embedder: Embedder, **kwargs: Any) -> SemanticCache:
        """Build a cache at ``path`` (SQLite) from a file written by ``dumps``."""
        _header, entries = read_dump(source, embedder.fingerprint, embedder.dim)
        cache = cls(path, embedder, **kwargs)
        try:
            batch: list[StoredEntry] = []
            for entry in entries:
                batch.append(entry)
                if len(batch) >= 1000:
                    cache._load_batch(batch)
                    batch = []
            cache._load_batch(batch)
        except BaseException:
            cache.close()
            raise
        return cache

    def _load_batch(self, batch: list[StoredEntry]) -> None:
        if not batch:
            return
        with self._lock:
            ids = self._store.insert_many(batch)
            if self._index is not None:
                self._index.add(
                    ids,
                    [e.namespace for e in batch],
                    np.stack([from_bytes(e.embedding) for e in batch]),
                )
