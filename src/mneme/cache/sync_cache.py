# Generated from async_cache.py by scripts/unasync.py: edit that file, then run
# `make generate`. `make lint` fails when this file is stale.
"""SemanticCache: the cache for plain calls, thread-safe.

A thin driver of the I/O-free flows in ``flows``: a flow yields store and embedder
calls, the cache performs them and sends the results back.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from mneme._embedder import Embedder
from mneme._errors import CacheClosedError
from mneme._policy import check_threshold
from mneme._types import (
    ConfidenceFn,
    Health,
    Hit,
    IndexBackend,
    MetricsHook,
    MultiProcessMode,
    ProgressFn,
    Stats,
    StoredEntry,
    Validator,
    VectorDtype,
)
from mneme.cache import flows
from mneme.cache.dump import DumpWriter, count_rows, read_dump
from mneme.cache.options import CacheOptions, GuardsOption, check_sources
from mneme.cache.v1_archive import is_v1_archive, restore_v1_archive
from mneme.index import check_dtype
from mneme.stores.capabilities import (
    ReportsReplicas,
    describe,
    has_batch_methods,
    inserts_chunks,
    searches_itself,
    writes_counters_at_once,
)
from mneme.stores.protocol import ChangeTrackingStore, LookupStore, Store
from mneme.stores.sqlite import SQLiteStore

__all__ = ["SemanticCache"]

_T = TypeVar("_T")
_BATCH = 1000


class SemanticCache:
    """A two-layer cache of text -> response, persisted in a store.

    Layer 1 answers exact repeats of a normalised query; Layer 2 answers queries whose
    embedding is within ``similarity_threshold`` (cosine) of a stored one, unless a
    near-miss check (``guards``, on by default; see ``mneme.guards``) finds that the two
    questions differ in a number, a negation, a name, a code identifier or a
    comparison's direction. Safe to share between tasks (and, for the sync cache,
    threads).
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
        guards: GuardsOption = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_sources(type(self).__name__, path, store, embedder)
        options = CacheOptions.build(
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
            guards=guards,
        )
        assert embedder is not None
        if store is None:
            store = SQLiteStore(path)  # type: ignore[arg-type]
        self._store: Store = store
        self._embedder: Any = embedder
        self._clock = clock
        # Whether the store searches itself is known once it is open.
        self._state = flows.CacheState(
            options=options,
            dim=int(embedder.dim),
            fingerprint=embedder.fingerprint,
            threshold=options.similarity_threshold,
            search_store=False,
            index_label="none",
        )
        # With an in-process index, store writes and index updates must stay in step;
        # a store that searches itself needs no cache-wide lock (see ``open``).
        self._lock: Any = threading.RLock()
        self._opened = False
        self._closed = False
        self.open()  # the sync cache is ready when constructed, as in 1.0

    # -- lifecycle --------------------------------------------------------------

    def open(self) -> SemanticCache:
        """Open the store and build what the cache needs; idempotent."""
        if self._closed:
            raise CacheClosedError(f"this {type(self).__name__} is closed")
        if self._opened:
            return self
        fingerprint, dim = self._state.fingerprint, self._state.dim
        self._store_call(lambda s: s.open(fingerprint, dim))
        try:
            store = self._store
            self._state.change_tracking = isinstance(store, ChangeTrackingStore)
            self._state.batch = has_batch_methods(store)
            self._state.counters_at_once = writes_counters_at_once(store)
            self._state.chunked_insert = inserts_chunks(store)
            if searches_itself(store):
                self._state.search_store = True
                self._state.index_label = store.index_label
                lookup = isinstance(store, LookupStore)
                self._state.lookup_store = lookup
                self._lock = contextlib.nullcontext()
            self._drive(flows.open_flow(self._state))
        except BaseException:
            self._store_call(lambda s: s.close())
            raise
        self._opened = True
        return self

    def close(self) -> None:
        """Flush counters and close the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._opened:
            return
        # Let abandoned operations finish before the store goes away.
        with self._lock:
            try:
                self._drive(flows.flush_counters(self._state))
            finally:
                self._state.index = None
                self._store_call(lambda s: s.close())

    def __enter__(self) -> SemanticCache:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            state = "closed" if self._closed else "not open yet (call open() first)"
            raise CacheClosedError(f"this {type(self).__name__} is {state}")

    def _now(self) -> int:
        return int(self._clock())

    # -- running flows ----------------------------------------------------------

    def _call(self, flow: flows.Flow[_T]) -> _T:
        """Run a flow under the cache lock."""
        self._check_open()
        with self._lock:
            self._check_open()
            return self._drive(flow)

    def _drive(self, flow: flows.Flow[_T]) -> _T:
        """Perform each call the flow yields and send back the result (or throw the
        exception into it)."""
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = flow.throw(error) if error is not None else flow.send(result)
            except StopIteration as stop:
                done: _T = stop.value
                return done
            result, error = None, None
            try:
                result = self._perform(call)
            except Exception as exc:
                error = exc

    def _perform(self, call: flows.Call) -> Any:
        if isinstance(call, flows.StoreCall):
            return self._store_call(call.fn)
        if isinstance(call, flows.NextChunk):
            return _take(call.source, call.n)
        try:
            return self._embed(call)
        except Exception as exc:
            if call.capture:
                return exc
            raise

    def _store_call(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self._store)

    def _embed(self, call: flows.EmbedCall) -> list[Any]:
        embedder, texts = self._embedder, list(call.texts)
        many = getattr(embedder, "embed_many", None) if call.batch else None
        if many is not None:
            return list(np.asarray(_blocking(lambda: many(texts))))
        return _blocking(lambda: [embedder.embed(t) for t in texts])

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
        cache and counts a miss (reason "bypass"), e.g. to force a fresh answer."""
        self._check_open()
        flow = flows.get_request(self._state, query, embedding, namespace, bypass, self._now())
        return self._call(flow)

    def get_many(self, queries: Sequence[str], *, namespace: str = "default") -> list[Hit | None]:
        """``get`` for a batch: one exact lookup for all, one embedder call for the
        rest when the embedder has ``embed_many``. Same results as a loop."""
        self._check_open()
        return self._call(flows.get_many_request(self._state, queries, namespace, self._now()))

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
        flow = flows.put_request(
            self._state,
            query,
            response,
            embedding=embedding,
            namespace=namespace,
            metadata=metadata,
            ttl=ttl,
            now=self._now(),
        )
        self._call(flow)

    def put_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        namespace: str = "default",
        progress: ProgressFn | None = None,
    ) -> None:
        """``put`` for a batch: every item is validated (nothing is stored if one is
        bad), embedded with one ``embed_many`` call per 1,024 texts when the embedder
        has it, and written in one store transaction. Keys: query, response, and
        optionally embedding, metadata, ttl, namespace. ``progress`` hears of the
        tasks "embed" (texts) and "write" (entries). When every item carries its
        embedding and the store writes chunk by chunk (``PostgresStore`` opened from
        a DSN), each chunk of 1,000 items is checked only when the store is ready to
        write it (without pgvector, while the server writes the one before); a bad
        item then rolls the whole batch back."""
        self._check_open()
        now = self._now()
        self._call(flows.put_many_request(self._state, items, namespace, now, progress))

    def delete(self, query: str, *, namespace: str = "default") -> bool:
        """Remove the entry for this exact (normalised) query; True if there was one."""
        self._check_open()
        return self._call(flows.delete_request(self._state, query, namespace))

    # -- maintenance and introspection -----------------------------------------

    def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """Delete expired entries (in one namespace or all); returns how many."""
        self._check_open()
        return self._call(flows.vacuum_request(self._state, namespace, compact, self._now()))

    def compact(self) -> int:
        """Drop the in-process index's tombstones; returns how many."""
        self._check_open()
        return self._call(flows.compact_flow(self._state))

    def stats(self, *, namespace: str | None = None) -> Stats:
        self._check_open()
        return self._call(flows.stats_request(self._state, namespace))

    def health(self) -> Health:
        self._check_open()
        label, schema_version = describe(self._store)
        flow = flows.health_flow(
            self._state,
            self._now(),
            label,
            schema_version,
            replicated=isinstance(self._store, ReportsReplicas),
        )
        return self._call(flow)

    def list_namespaces(self) -> list[str]:
        self._check_open()
        return self._call(flows.list_namespaces_flow())

    def clear_namespace(self, namespace: str) -> int:
        self._check_open()
        return self._call(flows.clear_namespace_request(self._state, namespace))

    def clear(self) -> int:
        self._check_open()
        return self._call(flows.clear_flow(self._state))

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

    def dumps(self, dest: str, *, progress: ProgressFn | None = None) -> int:
        """Write every entry to a portable file (JSON lines); returns how many.
        ``dest`` appears only when the whole file is written. ``progress`` hears of
        the task "export"."""
        self._check_open()
        with self._lock:
            self._check_open()
            st = self._state
            total: int = self._store_call(lambda s: s.count())
            flows.report(progress, "export", 0, total)
            rows = flows.as_iterator(self._store_call(lambda s: s.iter_all()))
            with DumpWriter(dest, st.fingerprint, st.dim) as out:
                while batch := _take(rows, _BATCH):
                    _blocking(lambda: out.write(batch))
                    if out.count < total:
                        flows.report(progress, "export", out.count, total)
            flows.report(progress, "export", out.count, out.count)
            return out.count

    def load(self, source: str, *, progress: ProgressFn | None = None) -> int:
        """Add the entries of a file written by ``dumps`` to this cache, each batch of
        1,000 in one store transaction; an entry with the same namespace and query
        is replaced, so loading a file again finishes a load that was stopped.
        Returns how many entries were read. The file must come from this cache's
        embedder. ``progress`` hears of the task "import"."""
        self._check_open()
        st = self._state
        _header, entries = read_dump(source, st.fingerprint, st.dim)
        total = _blocking(lambda: count_rows(source))
        batches = _batches(entries, _BATCH)
        done = 0
        flows.report(progress, "import", 0, total)
        while batch := _blocking(lambda: next(batches, [])):
            self._call(flows.load_flow(st, batch))
            done += len(batch)
            if done < total:
                flows.report(progress, "import", done, total)
        flows.report(progress, "import", done, done)
        return done

    @classmethod
    def loads(
        cls,
        source: str,
        path: str,
        embedder: Embedder,
        *,
        progress: ProgressFn | None = None,
        **kwargs: Any,
    ) -> SemanticCache:
        """Build a cache at ``path`` (SQLite) from a file written by ``dumps``, or by
        mneme 1.0's ``dumps`` (a tar.gz checkpoint): the two are told apart by their
        content, not their name. A 1.0 checkpoint becomes a new cache file (``path``
        must not exist), counters and quotas included, and its ``vector_dtype`` is the
        default. ``source`` is only read; a bad one raises ``CheckpointError`` (or an
        embedder error) and writes nothing."""
        fingerprint, dim = embedder.fingerprint, int(embedder.dim)
        if _blocking(lambda: is_v1_archive(source)):
            manifest = _blocking(lambda: restore_v1_archive(source, path, fingerprint, dim))
            kwargs.setdefault("vector_dtype", manifest.get("vector_dtype", "float32"))
            restored = cls(path, embedder, **kwargs)
            restored.open()
            return restored
        read_dump(source, fingerprint, dim)  # refuse before creating
        cache = cls(path, embedder, **kwargs)
        try:
            cache.open()
            cache.load(source, progress=progress)
        except BaseException:
            cache.close()
            raise
        return cache


def _blocking(fn: Callable[[], _T]) -> _T:
    """Run blocking work: in a worker thread for the async cache, inline for the sync."""
    return fn()


def _take(source: Any, n: int) -> list[Any]:
    """Up to n items from an iterator a store returned (async ones too)."""
    return _blocking(lambda: list(itertools.islice(source, n)))


def _batches(items: Iterable[StoredEntry], n: int) -> Iterator[list[StoredEntry]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch
