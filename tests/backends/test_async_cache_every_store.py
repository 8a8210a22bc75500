"""AsyncSemanticCache mirrors SemanticCache, on every store.

The core behaviours run as one scenario, written once against an awaitable facade,
on both caches and on every store (through ``store_factory``): the two transcripts
must be equal to each other and to the expected values. Then the lifecycle (calls
before open and after close raise CacheClosedError; ``async with`` opens and closes)
and cancellation: a cancelled call stops the caller's wait, never the work, so nothing
is left half written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pytest

from cache_helpers import AsyncHashing, Events, at_cos, run, table
from conftest import FakeClock, StoreFactory
from mneme import (
    AsyncSemanticCache,
    CacheClosedError,
    Hit,
    MemoryStore,
    SemanticCache,
    Stats,
    Store,
    StoredEntry,
    to_sync_embedder,
)

# -- one facade over both caches ------------------------------------------------------


class CacheLike(Protocol):
    async def get(
        self, query: str, *, embedding: Any = None, namespace: str = "default"
    ) -> Hit | None: ...

    async def get_many(
        self, queries: Sequence[str], *, namespace: str = "default"
    ) -> list[Hit | None]: ...

    async def put(
        self,
        query: str,
        response: str,
        *,
        embedding: Any = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None: ...

    async def put_many(
        self, items: Sequence[Mapping[str, Any]], *, namespace: str = "default"
    ) -> None: ...

    async def delete(self, query: str, *, namespace: str = "default") -> bool: ...

    async def stats(self, *, namespace: str | None = None) -> Stats: ...

    async def clear_namespace(self, namespace: str) -> int: ...


class SyncFacade:
    """SemanticCache behind awaitable methods, so one scenario drives both caches."""

    def __init__(self, cache: SemanticCache) -> None:
        self.cache = cache

    async def get(
        self, query: str, *, embedding: Any = None, namespace: str = "default"
    ) -> Hit | None:
        return self.cache.get(query, embedding=embedding, namespace=namespace)

    async def get_many(
        self, queries: Sequence[str], *, namespace: str = "default"
    ) -> list[Hit | None]:
        return self.cache.get_many(queries, namespace=namespace)

    async def put(
        self,
        query: str,
        response: str,
        *,
        embedding: Any = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        self.cache.put(
            query, response, embedding=embedding, namespace=namespace, metadata=metadata, ttl=ttl
        )

    async def put_many(
        self, items: Sequence[Mapping[str, Any]], *, namespace: str = "default"
    ) -> None:
        self.cache.put_many(items, namespace=namespace)

    async def delete(self, query: str, *, namespace: str = "default") -> bool:
        return self.cache.delete(query, namespace=namespace)

    async def stats(self, *, namespace: str | None = None) -> Stats:
        return self.cache.stats(namespace=namespace)

    async def clear_namespace(self, namespace: str) -> int:
        return self.cache.clear_namespace(namespace)


@contextlib.asynccontextmanager
async def open_cache(kind: str, store: Store, **kwargs: Any) -> AsyncIterator[CacheLike]:
    if kind == "sync":
        with SemanticCache(store=store, **kwargs) as cache:
            yield SyncFacade(cache)
    else:
        async with AsyncSemanticCache(store=store, **kwargs) as acache:
            yield acache


def brief(hit: Hit | None) -> tuple[str, str, float] | None:
    return None if hit is None else (hit.layer, hit.response, round(hit.similarity, 4))


# -- the shared scenario ----------------------------------------------------------------


async def scenario(kind: str, store: Store, ns: str) -> list[Any]:
    """Every core behaviour once, in namespaces prefixed ``ns``; returns a transcript."""
    clock = FakeClock()
    events = Events()
    quota_ns = f"{ns}-q"
    out: list[Any] = []
    async with open_cache(
        kind,
        store,
        embedder=table(),
        similarity_threshold=0.9,
        namespace_quotas={quota_ns: 3},
        metrics_hook=events,
        clock=clock,
    ) as c:
        # Exact and semantic hits, with metadata of every JSON type.
        meta = {"k": [1, 2.5, None, True, {"x": "y"}]}
        await c.put("query", "answer", namespace=ns, metadata=meta)
        exact = await c.get("  QUERY ", namespace=ns)
        out.append(("exact", brief(exact), exact.metadata if exact else None))
        out.append(("semantic", brief(await c.get("c95", namespace=ns))))
        # Miss reasons.
        out.append(("below", brief(await c.get("c50", namespace=ns))))
        out.append(("empty ns", brief(await c.get("query", namespace=f"{ns}-empty"))))
        out.append(("no vector", brief(await c.get("not in the table", namespace=ns))))
        out.append(("bad dim", brief(await c.get("c95", embedding=[1.0, 0.0], namespace=ns))))
        out.append(("events", events.take()))
        # put_many / get_many against the same puts and gets in a loop.
        items: list[dict[str, Any]] = [
            {"query": "c99", "response": "r99"},
            {"query": "far", "response": "rfar", "metadata": {"n": 1}},
            {"query": "c99", "response": "r99 again"},  # the later one wins
        ]
        await c.put_many(items, namespace=f"{ns}-many")
        for item in items:
            await c.put(
                item["query"],
                item["response"],
                metadata=item.get("metadata"),
                namespace=f"{ns}-loop",
            )
        queries = ["c99", "far", "c98", "c50", "query", "far"]
        many = [brief(h) for h in await c.get_many(queries, namespace=f"{ns}-many")]
        loop = [brief(await c.get(q, namespace=f"{ns}-loop")) for q in queries]
        out.append(("get_many", many, many == loop))
        events.take()
        # TTL on the injected clock.
        await c.put("far", "short lived", namespace=ns, ttl=10)
        clock.advance(9)
        out.append(("ttl alive", brief(await c.get("far", namespace=ns))))
        clock.advance(1)
        out.append(("ttl expired", brief(await c.get("far", namespace=ns))))
        out.append(("events", events.take()))
        # LRU eviction under a namespace quota.
        for q in ("c99", "c98", "c97"):
            clock.advance(1)
            await c.put(q, f"q-{q}", namespace=quota_ns)
        clock.advance(1)
        await c.get("c99", namespace=quota_ns)  # c98 is now the least recently used
        clock.advance(1)
        await c.put("c96", "q-c96", namespace=quota_ns)
        q_stats = await c.stats(namespace=quota_ns)
        out.append(("quota", q_stats.entries, q_stats.evictions, events.take()[-1]))
        out.append(("evicted", brief(await c.get("c98", namespace=quota_ns))))
        out.append(
            ("delete", await c.delete("query", namespace=ns), await c.delete("query", namespace=ns))
        )
        s = await c.stats(namespace=ns)
        out.append(("stats", s.entries, s.hits_exact, s.hits_semantic, s.misses, s.expirations))
        for suffix in ("", "-many", "-loop", "-q"):
            await c.clear_namespace(ns + suffix)
    return out


def sim(a: float, b: float) -> float:
    va, vb = (np.asarray(at_cos(x), dtype=np.float32) for x in (a, b))
    return round(float(np.dot(va, vb)), 4)


def expected_transcript() -> list[Any]:
    s95, s99 = (round(float(np.float32(v)), 4) for v in (0.95, 0.99))
    meta = {"k": [1, 2.5, None, True, {"x": "y"}]}
    return [
        ("exact", ("exact", "answer", 1.0), meta),
        ("semantic", ("semantic", "answer", s95)),
        ("below", None),
        ("empty ns", None),
        ("no vector", None),
        ("bad dim", None),
        (
            "events",
            [
                ("hit", "exact"),
                ("hit", "semantic"),
                ("miss", "below_threshold"),
                ("miss", "no_match"),
                ("miss", "embedder_failure"),
                ("miss", "dim_mismatch"),
            ],
        ),
        (
            "get_many",
            [
                ("exact", "r99 again", 1.0),
                ("exact", "rfar", 1.0),
                ("semantic", "r99 again", sim(0.98, 0.99)),
                None,
                ("semantic", "r99 again", s99),
                ("exact", "rfar", 1.0),
            ],
            True,
        ),
        ("ttl alive", ("exact", "short lived", 1.0)),
        ("ttl expired", None),
        ("events", [("hit", "exact"), ("expired", "1"), ("miss", "below_threshold")]),
        ("quota", 3, 1, ("eviction", "1")),
        # c98 is gone; its nearest remaining neighbour is c97 (2.6 degrees away).
        ("evicted", ("semantic", "q-c97", sim(0.98, 0.97))),
        ("delete", True, False),
        ("stats", 0, 2, 1, 4, 1),
    ]


def test_async_and_sync_caches_give_the_same_transcript(store_factory: StoreFactory) -> None:
    sync_out = run(scenario("sync", store_factory(), "sync"))
    async_out = run(scenario("async", store_factory(), "async"))
    assert async_out == expected_transcript()
    assert async_out == sync_out


# -- lifecycle --------------------------------------------------------------------------


def _all_calls(cache: AsyncSemanticCache) -> list[Callable[[], Awaitable[Any]]]:
    return [
        lambda: cache.get("query"),
        lambda: cache.get_many(["query"]),
        lambda: cache.put("query", "x"),
        lambda: cache.put_many([{"query": "query", "response": "x"}]),
        lambda: cache.delete("query"),
        lambda: cache.vacuum(),
        lambda: cache.compact(),
        lambda: cache.stats(),
        lambda: cache.health(),
        lambda: cache.list_namespaces(),
        lambda: cache.clear_namespace("default"),
        lambda: cache.clear(),
        lambda: cache.requantize("float16"),
    ]


def test_closed_error_before_open_and_after_close(store_factory: StoreFactory) -> None:
    async def main() -> None:
        cache = AsyncSemanticCache(store=store_factory(), embedder=table())
        for call in _all_calls(cache):
            with pytest.raises(CacheClosedError, match="not open yet"):
                await call()
        with pytest.raises(CacheClosedError):
            cache.set_similarity_threshold(0.5)
        assert await cache.open() is cache
        assert await cache.open() is cache  # idempotent
        await cache.put("query", "answer")
        hit = await cache.get("query")
        assert hit is not None and hit.response == "answer"
        await cache.close()
        await cache.close()  # idempotent
        for call in _all_calls(cache):
            with pytest.raises(CacheClosedError, match="closed"):
                await call()
        with pytest.raises(CacheClosedError):
            await cache.open()

    run(main())


def test_async_with_opens_and_closes(persistent_store_factory: StoreFactory) -> None:
    store_factory = persistent_store_factory

    async def main() -> None:
        cache = AsyncSemanticCache(store=store_factory(), embedder=table())
        async with cache as c:
            assert c is cache
            await c.put("query", "inside")
            health = await c.health()
            assert health.healthy and health.entries == 1
        with pytest.raises(CacheClosedError):
            await cache.get("query")
        # The data is in the store, for the next cache.
        async with AsyncSemanticCache(store=store_factory(), embedder=table()) as again:
            hit = await again.get("query")
            assert hit is not None and hit.response == "inside"

    run(main())


# -- cancellation -----------------------------------------------------------------------


class SlowStore:
    """A store whose writes take a while (in the worker thread they run in)."""

    def __init__(self, inner: Store, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("insert", "insert_many", "delete_many", "get_by_hash"):

            def slow(*args: Any, **kwargs: Any) -> Any:
                time.sleep(self._delay)
                return attr(*args, **kwargs)

            return slow
        return attr


def _reader(store: Any, store_factory: StoreFactory, fp: str, dim: int) -> tuple[Store, bool]:
    """A second handle on the backing store, and whether it is ours to close: for a
    MemoryStore, whose entries live in that one object, the cache's own store."""
    inner = getattr(store, "_inner", store)  # under a SlowStore
    if isinstance(inner, MemoryStore):
        return inner, False
    reader = store_factory()
    reader.open(fp, dim)
    return reader, True


async def _check_consistent(
    cache: AsyncSemanticCache, entries: list[StoredEntry], expected_queries: set[str]
) -> None:
    """Store, index and counters agree: every stored entry is found by its own
    embedding (semantic layer) and its own query (exact layer), and nothing else."""
    stats = await cache.stats()
    assert stats.entries == len(entries)
    assert {e.query for e in entries} == expected_queries
    for e in entries:
        vector = np.frombuffer(e.embedding, dtype="<f4")
        # No number in the probe: the near-miss check would refuse "entry 2" against
        # "question 0 about topic 0", rightly.
        hit = await cache.get("probe for an entry zzz", embedding=vector, namespace=e.namespace)
        assert hit is not None and hit.layer == "semantic" and hit.response == e.response
        assert hit.similarity == pytest.approx(1.0, abs=1e-5)
        exact = await cache.get(e.query, namespace=e.namespace)
        assert exact is not None and exact.layer == "exact" and exact.response == e.response


@pytest.mark.parametrize("slow", ["embedder", "store"])
def test_cancelled_calls_leave_no_half_written_state(
    store_factory: StoreFactory, slow: str
) -> None:
    emb = AsyncHashing(dim=32, delay=0.02 if slow == "embedder" else 0.0)

    async def main() -> None:
        store: Any = store_factory()
        if slow == "store":
            store = SlowStore(store, 0.02)
        reader, owned = _reader(store, store_factory, emb.fingerprint, emb.dim)
        cache = AsyncSemanticCache(store=store, embedder=emb, similarity_threshold=0.99)
        await cache.open()
        try:
            await cache.put("seed question about apples", "seed")
            puts = [
                asyncio.ensure_future(cache.put(f"question {i} about topic {i * 7}", f"answer {i}"))
                for i in range(12)
            ]
            gets = [
                asyncio.ensure_future(cache.get(f"lookup {i} of something else")) for i in range(6)
            ]
            await asyncio.sleep(0.005)  # calls are running (or queued behind the lock)
            for task in puts + gets:
                task.cancel()
            settled = await asyncio.gather(*puts, *gets, return_exceptions=True)
            cancelled = sum(isinstance(r, asyncio.CancelledError) for r in settled)
            assert cancelled >= 1
            # wait_for's timeout cancels the same way.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(cache.put("late question xyz", "late"), timeout=0.001)
            # Cancelling abandons the wait, never the work: every call completes, in
            # the background (a cache with a lock runs them before the next call; one
            # on a store that searches itself runs them concurrently), so poll.
            queries = {"seed question about apples", "late question xyz"} | {
                f"question {i} about topic {i * 7}" for i in range(12)
            }
            for _ in range(200):  # bounded: about 10 s
                stats = await cache.stats()
                looked_up = stats.hits_exact + stats.hits_semantic + stats.misses
                if stats.entries == len(queries) and looked_up == 6:
                    break
                await asyncio.sleep(0.05)
            assert (stats.entries, looked_up) == (len(queries), 6)
            entries = await asyncio.to_thread(lambda: list(reader.iter_all()))
            await _check_consistent(cache, entries, queries)
            # The cache still works afterwards.
            await cache.put("after the storm", "calm")
            hit = await cache.get("after the storm")
            assert hit is not None and hit.response == "calm"
        finally:
            await cache.close()
            if owned:
                reader.close()

    run(main())


def test_close_waits_for_abandoned_calls(persistent_store_factory: StoreFactory) -> None:
    """close() after cancelled calls: the abandoned work still finishes (it is not cut
    off by the store closing under it), so every put is in the store afterwards."""
    emb = AsyncHashing(dim=32, delay=0.02)

    async def main() -> None:
        cache = await AsyncSemanticCache(store=persistent_store_factory(), embedder=emb).open()
        tasks = [asyncio.ensure_future(cache.put(f"entry {i}", f"r{i}")) for i in range(5)]
        await asyncio.sleep(0.005)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cache.close()
        await asyncio.sleep(0.2)  # anything still running in the background ends here

    run(main())
    with SemanticCache(store=persistent_store_factory(), embedder=to_sync_embedder(emb)) as again:
        assert again.stats().entries == 5
        assert again.health().integrity_ok
        for i in range(5):
            hit = again.get(f"entry {i}")
            assert hit is not None and hit.response == f"r{i}"
