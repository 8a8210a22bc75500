"""AsyncSemanticCache: the asyncio shell over the same flows as SemanticCache.

Stores with native coroutines (``AsyncStore``, e.g. Postgres on psycopg's async
connections) are awaited directly; plain stores run in worker threads. Each operation
runs to completion in its own task: cancelling the caller abandons the wait, never the
work, so a cancelled call leaves no half-written state behind.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _flows as flows
from ._core import cache_config
from ._embedder import AsyncEmbedder, Embedder
from ._errors import CacheClosedError
from ._index import check_dtype
from ._policy import check_threshold
from ._store import (
    AsyncCapableStore,
    AsyncStore,
    AsyncVectorSearchStore,
    ChangeTrackingStore,
    Store,
    VectorSearchStore,
)
from ._store_sqlite import SQLiteStore
from ._types import (
    ConfidenceFn,
    Health,
    Hit,
    IndexBackend,
    MetricsHook,
    MultiProcessMode,
    Stats,
    Validator,
    VectorDtype,
)

__all__ = ["AsyncSemanticCache"]


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class AsyncSemanticCache:
    """The async twin of ``SemanticCache``: same constructor, same methods, awaited.

    Construct it, then ``await cache.open()`` or use ``async with``. The embedder may
    be sync (run in a thread) or async.
    """

    def __init__(
        self,
        path: str | None = None,
        embedder: Embedder | AsyncEmbedder | None = None,
        *,
        store: Store | AsyncStore | None = None,
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
        config = cache_config("AsyncSemanticCache", path, store, embedder, locals())
        assert embedder is not None
        if store is None:
            store = SQLiteStore(path)  # type: ignore[arg-type]
        if isinstance(store, AsyncCapableStore):
            # Native async I/O when the store can provide it; else worker threads.
            store = store.to_async() or store
        self._store: Any = store
        self._native = isinstance(store, AsyncStore) and asyncio.iscoroutinefunction(store.open)
        self._embedder = embedder
        self._async_embed = asyncio.iscoroutinefunction(embedder.embed)
        self._clock = clock
        # Whether the store searches itself is known once it is open.
        self._state = flows.CacheState(
            config=config,
            dim=int(embedder.dim),
            fingerprint=embedder.fingerprint,
            threshold=config.similarity_threshold,
            search_store=False,
            index_label="none",
        )
        self._lock: asyncio.Lock | _NoLock = asyncio.Lock()
        self._opened = False
        self._closed = False
        # Operations still running, including ones whose callers were cancelled.
        self._running: set[asyncio.Future[Any]] = set()

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> AsyncSemanticCache:
        """Open the store and build what the cache needs; idempotent."""
        if self._closed:
            raise CacheClosedError("this AsyncSemanticCache is closed")
        if self._opened:
            return self
        await self._store_call("open", self._state.fingerprint, self._state.dim)
        try:
            store = self._store
            self._state.change_tracking = isinstance(store, ChangeTrackingStore)
            if isinstance(store, VectorSearchStore | AsyncVectorSearchStore) and (
                store.vector_search_enabled
            ):
                self._state.search_store = True
                self._state.index_label = store.index_label
                self._lock = _NoLock()
            await self._drive(flows.open_flow(self._state))
        except BaseException:
            await self._store_call("close")
            raise
        self._opened = True
        return self

    async def close(self) -> None:
        """Flush counters and close the store; idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._opened:
            return
        # Let abandoned operations finish before the store goes away.
        await asyncio.gather(*self._running, return_exceptions=True)
        async with self._lock:
            try:
                await self._drive(flows.flush_counters(self._state))
            finally:
                self._state.index = None
                await self._store_call("close")

    async def __aenter__(self) -> AsyncSemanticCache:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed or not self._opened:
            state = "closed" if self._closed else "not open yet (await cache.open())"
            raise CacheClosedError(f"this AsyncSemanticCache is {state}")

    def _now(self) -> int:
        return int(self._clock())

    # -- running flows ----------------------------------------------------------

    async def _store_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._store, name)
        if self._native:
            # iter_* of a native store are async iterators: returned, not awaited.
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        return await asyncio.to_thread(method, *args, **kwargs)

    async def _perform(self, call: flows.Call) -> Any:
        if isinstance(call, flows.StoreCall):
            return await self._store_call(call.name, *call.args, **call.kwargs)
        if isinstance(call, flows.NextChunk):
            return await _take(call.source, call.n)
        try:
            return await self._embed(call)
        except Exception as exc:
            if call.capture:
                return exc
            raise

    async def _embed(self, call: flows.EmbedCall) -> list[Any]:
        embedder: Any = self._embedder
        if call.batch and hasattr(embedder, "embed_many"):
            many = embedder.embed_many
            if asyncio.iscoroutinefunction(many):
                return list(np.asarray(await many(list(call.texts))))
            return list(np.asarray(await asyncio.to_thread(many, list(call.texts))))
        if self._async_embed:
            return [await embedder.embed(t) for t in call.texts]
        return await asyncio.to_thread(lambda: [embedder.embed(t) for t in call.texts])

    async def _drive(self, flow: flows.Flow) -> Any:
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = flow.throw(error) if error is not None else flow.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                result = await self._perform(call)
            except Exception as exc:
                error = exc

    async def _call(self, flow: flows.Flow) -> Any:
        self._check_open()
        task = asyncio.ensure_future(self._locked(flow))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        # shield: a cancelled caller stops waiting, the operation still finishes.
        return await asyncio.shield(task)

    async def _locked(self, flow: flows.Flow) -> Any:
        async with self._lock:
            return await self._drive(flow)

    # -- lookups ----------------------------------------------------------------

    async def get(
        self,
        query: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        bypass: bool = False,
    ) -> Hit | None:
        self._check_open()
        st = self._state
        hit: Hit | None = await self._call(
            flows.get_request(st, query, embedding, namespace, bypass, self._now())
        )
        return hit

    async def get_many(
        self, queries: Sequence[str], *, namespace: str = "default"
    ) -> list[Hit | None]:
        self._check_open()
        hits: list[Hit | None] = await self._call(
            flows.get_many_request(self._state, queries, namespace, self._now())
        )
        return hits

    # -- writes -----------------------------------------------------------------

    async def put(
        self,
        query: str,
        response: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self._check_open()
        await self._call(
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

    async def put_many(
        self, items: Iterable[Mapping[str, Any]], *, namespace: str = "default"
    ) -> None:
        self._check_open()
        await self._call(flows.put_many_request(self._state, items, namespace, self._now()))

    async def delete(self, query: str, *, namespace: str = "default") -> bool:
        self._check_open()
        deleted: bool = await self._call(flows.delete_request(self._state, query, namespace))
        return deleted

    # -- maintenance and introspection -----------------------------------------

    async def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        self._check_open()
        flow = flows.vacuum_request(self._state, namespace, compact, self._now())
        n: int = await self._call(flow)
        return n

    async def compact(self) -> int:
        self._check_open()
        n: int = await self._call(flows.compact_flow(self._state))
        return n

    async def stats(self, *, namespace: str | None = None) -> Stats:
        self._check_open()
        stats: Stats = await self._call(flows.stats_request(self._state, namespace))
        return stats

    async def health(self) -> Health:
        self._check_open()
        store = self._store
        flow = flows.health_flow(
            self._state, self._now(), store.backend_label, store.schema_version
        )
        health: Health = await self._call(flow)
        return health

    async def list_namespaces(self) -> list[str]:
        self._check_open()
        namespaces: list[str] = await self._call(flows.list_namespaces_flow())
        return namespaces

    async def clear_namespace(self, namespace: str) -> int:
        self._check_open()
        n: int = await self._call(flows.clear_namespace_request(self._state, namespace))
        return n

    async def clear(self) -> int:
        self._check_open()
        n: int = await self._call(flows.clear_flow(self._state))
        return n

    async def requantize(self, dtype: VectorDtype) -> None:
        self._check_open()
        await self._call(flows.requantize_flow(self._state, check_dtype(dtype)))

    @property
    def similarity_threshold(self) -> float:
        return self._state.threshold

    def set_similarity_threshold(self, value: float) -> None:
        self._check_open()
        self._state.threshold = check_threshold(value)


async def _take(source: Any, n: int) -> list[Any]:
    """Up to n items from a sync or async iterator."""
    if hasattr(source, "__anext__"):
        out: list[Any] = []
        async for item in source:
            out.append(item)
            if len(out) >= n:
                break
        return out
    return await asyncio.to_thread(lambda: list(itertools.islice(source, n)))
