"""AsyncSemanticCache on SQLite, and the embedder bridges.

The async cache offers the same calls, arguments, results and errors as SemanticCache,
only awaitable. ``to_async_embedder`` runs a sync embedder in a worker thread and
``to_sync_embedder`` runs an async one outside any event loop; each leaves an embedder
that is already of the right kind alone. A native async embedder (and its batch
method) works in either cache, and its failure on a lookup is a miss, as in the sync
cache. The scenario comparing both caches on every store is in
``tests/backends/test_async_cache_every_store.py``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cache_helpers import AsyncHashing, Events, run, table
from conftest import StoreFactory
from mneme import (
    AsyncEmbedder,
    AsyncSemanticCache,
    CacheClosedError,
    Embedder,
    EmbedderDimensionError,
    Hit,
    SemanticCache,
    Stats,
    to_async_embedder,
    to_sync_embedder,
)
from mneme.testing import HashingEmbedder

# -- lifecycle --------------------------------------------------------------------------


def test_async_with_closes_when_the_body_raises(tmp_path: Path) -> None:
    async def main() -> AsyncSemanticCache:
        cache = AsyncSemanticCache(str(tmp_path / "c.db"), table())
        with pytest.raises(RuntimeError, match="boom"):
            async with cache:
                await cache.put("query", "x")
                raise RuntimeError("boom")
        return cache

    cache = run(main())
    with pytest.raises(CacheClosedError):
        run(cache.stats())


def test_stats_persist_across_reopen_on_sqlite(sqlite_store_factory: StoreFactory) -> None:
    async def session(puts: bool) -> Stats:
        async with AsyncSemanticCache(store=sqlite_store_factory(), embedder=table()) as c:
            if puts:
                await c.put("query", "a")
                await c.put("c50", "b")
            await c.get("query")  # exact
            await c.get("c99")  # semantic (0.99 to "query")
            await c.get("far")  # miss
            return await c.stats()

    first = run(session(True))
    assert (first.hits_exact, first.hits_semantic, first.misses) == (1, 1, 1)
    second = run(session(False))
    assert (second.hits_exact, second.hits_semantic, second.misses) == (2, 2, 2)
    assert second.entries == 2
    # The sync cache reads the same persisted counters.
    with SemanticCache(store=sqlite_store_factory(), embedder=table()) as sync:
        s = sync.stats()
    assert (s.hits_exact, s.hits_semantic, s.misses, s.entries) == (2, 2, 2, 2)


def test_put_with_a_wrong_dim_embedding_raises(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncSemanticCache(str(tmp_path / "c.db"), table()) as c:
            with pytest.raises(EmbedderDimensionError, match="dim"):
                await c.put("query", "x", embedding=[1.0, 0.0])
            assert (await c.stats()).entries == 0

    run(main())


# -- embedders --------------------------------------------------------------------------


class ThreadRecordingEmbedder:
    """A sync embedder that remembers the threads it ran in."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dim=32)
        self.threads: list[int] = []

    @property
    def dim(self) -> int:
        return 32

    @property
    def fingerprint(self) -> str:
        return "thread-recording-32"

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        self.threads.append(threading.get_ident())
        return self.inner.embed(text)


class AsyncBatchHashing(AsyncHashing):
    """An async embedder with an async batch method."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(len(texts))
        return self.inner.embed_many(texts)


def test_to_async_embedder_runs_embed_in_a_worker_thread() -> None:
    inner = ThreadRecordingEmbedder()
    wrapped = to_async_embedder(inner)
    assert isinstance(wrapped, AsyncEmbedder)
    assert (wrapped.dim, wrapped.fingerprint) == (32, "thread-recording-32")

    async def main() -> npt.NDArray[np.float32]:
        return await wrapped.embed("hello world")

    vec = run(main())
    assert np.array_equal(vec, inner.inner.embed("hello world"))
    assert inner.threads and inner.threads[0] != threading.get_ident()
    assert to_sync_embedder(wrapped) is inner


def test_to_sync_embedder_runs_the_coroutine_outside_a_loop_only() -> None:
    inner = AsyncHashing()
    wrapped = to_sync_embedder(inner)
    assert isinstance(wrapped, Embedder)
    assert np.array_equal(wrapped.embed("hello"), inner.inner.embed("hello"))
    assert to_async_embedder(wrapped) is inner

    async def inside() -> None:
        wrapped.embed("hello")

    with pytest.raises(RuntimeError, match="running event loop"):
        run(inside())


def test_bridges_leave_embedders_of_the_right_kind_alone() -> None:
    sync, native = HashingEmbedder(dim=8), AsyncHashing(dim=8)
    assert to_sync_embedder(sync) is sync
    assert to_async_embedder(native) is native


def test_native_async_embedder_in_the_async_cache(tmp_path: Path) -> None:
    emb = AsyncHashing()

    async def main() -> tuple[Hit | None, Hit | None, Hit | None]:
        async with AsyncSemanticCache(str(tmp_path / "c.db"), emb, similarity_threshold=0.8) as c:
            await c.put("What is the capital of France?", "Paris")
            return (
                await c.get("what is the capital of france?"),
                await c.get("What is the capital of France"),
                await c.get("How do I bake sourdough bread?"),
            )

    exact, semantic, miss = run(main())
    assert exact is not None and (exact.layer, exact.response) == ("exact", "Paris")
    assert semantic is not None and (semantic.layer, semantic.response) == ("semantic", "Paris")
    assert miss is None
    assert emb.calls == 3  # the put and the two lookups the exact layer could not answer


def test_async_batch_embedder_is_called_once_per_batch(tmp_path: Path) -> None:
    emb = AsyncBatchHashing()

    async def main() -> list[Hit | None]:
        async with AsyncSemanticCache(str(tmp_path / "c.db"), emb) as c:
            await c.put_many(
                [{"query": f"question number {i}", "response": str(i)} for i in range(5)]
            )
            return await c.get_many(
                [f"question number {i}" for i in range(5)] + ["unrelated zebra"]
            )

    hits = run(main())
    assert [h.response if h else None for h in hits] == ["0", "1", "2", "3", "4", None]
    assert emb.batches == [5]  # the put_many; get_many's only non-exact query embeds alone
    assert emb.calls == 1


def test_sync_cache_with_a_bridged_async_embedder(tmp_path: Path) -> None:
    with SemanticCache(str(tmp_path / "c.db"), to_sync_embedder(AsyncHashing())) as c:
        c.put("What is the capital of France?", "Paris")
        hit = c.get("What is the capital of France")
    assert hit is not None and hit.layer == "semantic"


def test_embedder_failure_on_get_is_a_miss_in_the_async_cache(tmp_path: Path) -> None:
    class Failing(AsyncHashing):
        async def embed(self, text: str) -> npt.NDArray[np.float32]:
            if "fail" in text:
                raise RuntimeError("model down")
            return await super().embed(text)

    events = Events()

    async def main() -> Hit | None:
        async with AsyncSemanticCache(str(tmp_path / "c.db"), Failing(), metrics_hook=events) as c:
            await c.put("fine", "ok")
            return await c.get("please fail")

    assert run(main()) is None
    assert events.take()[-1] == ("miss", "embedder_failure")


def test_every_sync_method_has_an_async_twin() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(SemanticCache) == public(AsyncSemanticCache)
    for name in ("dumps", "loads", "get", "put", "stats", "health", "vacuum", "close"):
        assert inspect.iscoroutinefunction(getattr(AsyncSemanticCache, name)), name
