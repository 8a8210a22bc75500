"""SemanticCache: the synchronous shell. The rules live in _core/_policy and the
operations in _flows; this module runs the flows with plain calls."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _flows as flows
from ._core import cache_config
from ._dump import read_dump, write_dump
from ._embedder import BatchEmbedder, Embedder
from ._errors import CacheClosedError
from ._index import check_dtype
from ._policy import check_threshold
from ._store import ChangeTrackingStore, Store, VectorSearchStore
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

__all__ = ["SemanticCache"]

_LOAD_BATCH = 1000


def uses_server_search(store: object) -> bool:
    """Whether an opened store answers Layer-2 queries itself."""
    return isinstance(store, VectorSearchStore) and store.vector_search_enabled


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
        config = cache_config("SemanticCache", path, store, embedder, locals())
        assert embedder is not None
        self._embedder = embedder
        self._clock = clock
        self._store: Store = store if store is not None else SQLiteStore(path)  # type: ignore[arg-type]
        self._closed = True
        self._store.open(embedder.fingerprint, int(embedder.dim))
        try:
            search = uses_server_search(self._store)
            self._state = flows.CacheState(
                config=config,
                dim=int(embedder.dim),
                fingerprint=embedder.fingerprint,
                threshold=config.similarity_threshold,
                search_store=search,
                index_label=self._store.index_label if search else "none",  # type: ignore[attr-defined]
                change_tracking=isinstance(self._store, ChangeTrackingStore),
            )
            # With an in-process index, store writes and index updates must stay in
            # step; a store that searches itself needs no cache-wide lock at all.
            self._lock: AbstractContextManager[Any] = nullcontext() if search else threading.RLock()
            with self._lock:
                self._run(flows.open_flow(self._state))
        except BaseException:
            self._store.close()
            raise
        self._closed = False

    # -- running flows ----------------------------------------------------------

    def _run(self, flow: flows.Flow) -> Any:
        """Drive a flow: perform each call it yields and send back the result (or
        throw the exception into it)."""
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = flow.throw(error) if error is not None else flow.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                result = self._perform(call)
            except BaseException as exc:
                error = exc

    def _perform(self, call: flows.Call) -> Any:
        if isinstance(call, flows.StoreCall):
            return getattr(self._store, call.name)(*call.args, **call.kwargs)
        if isinstance(call, flows.NextChunk):
            return list(itertools.islice(call.source, call.n))
        try:
            if call.batch and isinstance(self._embedder, BatchEmbedder):
                return list(np.asarray(self._embedder.embed_many(list(call.texts))))
            return [self._embedder.embed(t) for t in call.texts]
        except Exception as exc:
            if call.capture:
                return exc
            raise

    def _call(self, flow: flows.Flow) -> Any:
        """Run a flow under the cache lock."""
        with self._lock:
            self._check_open()
            return self._run(flow)

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("this SemanticCache is closed")

    def _now(self) -> int:
        return int(self._clock())

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Flush counters and close the store; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._run(flows.flush_counters(self._state))
            finally:
                self._state.index = None
                self._store.close()

    def __enter__(self) -> SemanticCache:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ----------------------------------------------------------------

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
        st = self._state
        hit: Hit | None = self._call(
            flows.get_request(st, query, embedding, namespace, bypass, self._now())
        )
        return hit

    def get_many(self, queries: Sequence[str], *, namespace: str = "default") -> list[Hit | None]:
        """``get`` for a batch: one exact lookup for all, one embedder call for the
        rest when the embedder has ``embed_many``. Same results as a loop."""
        self._check_open()
        hits: list[Hit | None] = self._call(
            flows.get_many_request(self._state, queries, namespace, self._now())
        )
        return hits

    # -- writes -----------------------------------------------------------------

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
        self._call(
            flows.put_request(
                self._state,
                query,
                response,
                embedding=embedding,
                namespace=namespace,
                metadata=metadata,
                ttl=ttl,
                now=self._now(),
            )
        )

    def put_many(self, items: Iterable[Mapping[str, Any]], *, namespace: str = "default") -> None:
        """``put`` for a batch: all items are validated first (nothing is stored if
        one is bad), embedded with one ``embed_many`` call when the embedder has it,
        and written in one store transaction. Keys: query, response, and optionally
        embedding, metadata, ttl, namespace."""
        self._check_open()
        self._call(flows.put_many_request(self._state, items, namespace, self._now()))

    def delete(self, query: str, *, namespace: str = "default") -> bool:
        """Remove the entry for this exact (normalised) query; True if there was one."""
        self._check_open()
        deleted: bool = self._call(flows.delete_request(self._state, query, namespace))
        return deleted

    # -- maintenance and introspection -----------------------------------------

    def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """Delete expired entries (in one namespace or all); returns how many."""
        self._check_open()
        n: int = self._call(flows.vacuum_request(self._state, namespace, compact, self._now()))
        return n

    def compact(self) -> int:
        """Drop the in-process index's tombstones; returns how many."""
        self._check_open()
        n: int = self._call(flows.compact_flow(self._state))
        return n

    def stats(self, *, namespace: str | None = None) -> Stats:
        self._check_open()
        stats: Stats = self._call(flows.stats_request(self._state, namespace))
        return stats

    def health(self) -> Health:
        self._check_open()
        store = self._store
        flow = flows.health_flow(
            self._state, self._now(), store.backend_label, store.schema_version
        )
        health: Health = self._call(flow)
        return health

    def list_namespaces(self) -> list[str]:
        self._check_open()
        namespaces: list[str] = self._call(flows.list_namespaces_flow())
        return namespaces

    def clear_namespace(self, namespace: str) -> int:
        self._check_open()
        n: int = self._call(flows.clear_namespace_request(self._state, namespace))
        return n

    def clear(self) -> int:
        self._check_open()
        n: int = self._call(flows.clear_flow(self._state))
        return n

    def requantize(self, dtype: VectorDtype) -> None:
        """Rebuild the in-process index with another in-memory vector dtype."""
        self._check_open()
        self._call(flows.requantize_flow(self._state, check_dtype(dtype)))

    @property
    def similarity_threshold(self) -> float:
        return self._state.threshold

    def set_similarity_threshold(self, value: float) -> None:
        self._check_open()
        self._state.threshold = check_threshold(value)

    # -- portable dumps ---------------------------------------------------------

    def dumps(self, dest: str) -> int:
        """Write every entry to a portable file (JSON lines); returns how many."""
        self._check_open()
        with self._lock:
            self._check_open()
            return write_dump(
                dest, self._state.fingerprint, self._state.dim, self._store.iter_all()
            )

    @classmethod
    def loads(cls, source: str, path: str, embedder: Embedder, **kwargs: Any) -> SemanticCache:
        """Build a cache at ``path`` (SQLite) from a file written by ``dumps``."""
        _header, entries = read_dump(source, embedder.fingerprint, embedder.dim)
        cache = cls(path, embedder, **kwargs)
        try:
            for batch in _batches(entries, _LOAD_BATCH):
                cache._call(flows.load_flow(cache._state, batch))
        except BaseException:
            cache.close()
            raise
        return cache


def _batches(items: Iterable[StoredEntry], n: int) -> Iterable[list[StoredEntry]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch
