"""A custom store written to mneme 1.0's Store protocol works with both caches.

Such a store has none of this package's batch methods; the cache sees that when it
opens the store and does the same work with the 1.0 methods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cache_helpers import E0, Events, run, table
from conftest import FakeClock
from mneme import AsyncSemanticCache, SemanticCache, Store, to_async_embedder
from mneme.stores.capabilities import describe, has_batch_methods
from mneme.stores.protocol import BatchStore
from mneme.testing import TableEmbedder
from v1_store import BATCH_METHODS, LegacyDictStore, Tables


def test_the_1_0_store_is_a_store_without_batch_methods() -> None:
    store = LegacyDictStore()
    assert isinstance(store, Store)
    assert not isinstance(store, BatchStore)
    assert not has_batch_methods(store)
    assert not any(hasattr(store, m) for m in BATCH_METHODS)
    assert describe(store) == ("legacydict", None)


def test_every_cache_method_works_on_a_1_0_store(clock: FakeClock) -> None:
    store = LegacyDictStore()
    events = Events()
    cache = SemanticCache(
        store=store,
        embedder=table(),
        clock=clock,
        metrics_hook=events,
        namespace_quotas={"small": 2},
    )
    with cache:
        cache.put("c99", "ninety-nine", metadata={"k": 1})
        exact = cache.get("c99")
        assert exact is not None and exact.layer == "exact" and exact.metadata == {"k": 1}
        semantic = cache.get("query")
        assert semantic is not None
        assert (semantic.layer, semantic.response) == ("semantic", "ninety-nine")
        assert cache.get("far") is None

        cache.put_many(
            [
                {"query": "c98", "response": "a"},
                {"query": "c97", "response": "b", "ttl": 10},
                {"query": "c98", "response": "a2"},  # the later one wins
            ]
        )
        hits = cache.get_many(["c98", "c97", "far"])
        assert [h.response if h else None for h in hits] == ["a2", "b", None]

        for i, q in enumerate(["c96", "c95", "c90"]):  # quota 2: the oldest goes
            clock.advance(1)
            cache.put(q, f"s{i}", namespace="small")
        small = [e.query for e in store.iter_all() if e.namespace == "small"]
        assert small == ["c95", "c90"]

        clock.advance(10)
        assert cache.vacuum() == 1  # c97's ttl ran out
        assert cache.delete("c98") is True
        assert cache.delete("c98") is False

        stats = cache.stats()
        assert (stats.entries, stats.hits_exact, stats.hits_semantic, stats.misses) == (3, 3, 1, 2)
        assert (stats.evictions, stats.expirations) == (1, 1)
        health = cache.health()
        assert (health.store_backend, health.schema_version) == ("legacydict", 1)
        assert health.healthy and health.entries == 3 and health.namespaces == 2
        assert health.oldest_entry_age_seconds == 13.0  # c99, put before any advance
        assert cache.list_namespaces() == ["default", "small"]
        assert cache.clear_namespace("small") == 2
        assert cache.clear() == 1
    assert ("eviction", {"namespace": "small", "count": 1}) in events.calls
    assert not any(name in BATCH_METHODS for name in store.calls)


def test_counters_are_kept_in_meta_as_1_0_kept_them(clock: FakeClock) -> None:
    tables = Tables()
    # Counters a 1.0 cache left behind: JSON {"namespace:name": total} under "counters".
    tables.meta["counters"] = json.dumps({"default:misses": 5, "a:b:hits_exact": 2})
    emb = table()
    with SemanticCache(store=LegacyDictStore(tables), embedder=emb, clock=clock) as cache:
        assert cache.stats().misses == 5
        assert cache.stats(namespace="a:b").hits_exact == 2
        cache.put("c99", "r")
        cache.get("c99")
        assert cache.get("far") is None
    assert json.loads(tables.meta["counters"]) == {
        "default:misses": 6,
        "default:hits_exact": 1,
        "a:b:hits_exact": 2,
    }
    with SemanticCache(store=LegacyDictStore(tables), embedder=emb, clock=clock) as again:
        stats = again.stats()
        assert (stats.hits_exact, stats.misses, stats.entries) == (3, 6, 1)
        hit = again.get("query")  # the index was rebuilt from iter_all's list
        assert hit is not None and hit.response == "r"


def test_index_loads_every_row_from_a_list(clock: FakeClock) -> None:
    # iter_all returns a list: each chunk (8192 rows) must go on from the last one,
    # not start again.
    tables = Tables()
    vectors = {f"q{i}": [1.0, float(i), 0.0, 0.0] for i in range(9000)}
    emb = TableEmbedder({**vectors, "query": E0}, dim=4)
    store = LegacyDictStore(tables)
    with SemanticCache(store=store, embedder=emb, clock=clock) as cache:
        cache.put_many({"query": q, "response": q} for q in vectors)
    with SemanticCache(store=LegacyDictStore(tables), embedder=emb, clock=clock) as cache:
        assert cache.stats().index_memory_bytes is not None
        assert cache._state.index is not None and len(cache._state.index) == 9000
        hit = cache.get("query", embedding=[1.0, 0.0, 0.0, 0.0])
        assert hit is not None and hit.response == "q0"


def test_stale_tolerant_catches_up_by_reloading(clock: FakeClock) -> None:
    tables = Tables()
    emb = table()
    kwargs: dict[str, Any] = {"multi_process_mode": "stale-tolerant", "clock": clock}
    with (
        SemanticCache(store=LegacyDictStore(tables), embedder=emb, **kwargs) as reader,
        SemanticCache(store=LegacyDictStore(tables), embedder=emb, **kwargs) as writer,
    ):
        assert reader.get("query") is None
        writer.put("c95", "from the writer")
        hit = reader.get("query")
        assert hit is not None and hit.response == "from the writer"


def test_async_cache_on_a_1_0_store(tmp_path: Path, clock: FakeClock) -> None:
    tables = Tables()
    emb = to_async_embedder(table())

    async def scenario() -> None:
        store = LegacyDictStore(tables)
        async with AsyncSemanticCache(store=store, embedder=emb, clock=clock) as cache:
            await cache.put("c99", "r")
            await cache.put_many([{"query": "c50", "response": "fifty"}])
            hit = await cache.get("query")
            assert hit is not None and hit.layer == "semantic"
            assert [h.layer if h else None for h in await cache.get_many(["c50", "far"])] == [
                "exact",
                None,
            ]
            assert (await cache.stats()).misses == 1
            assert (await cache.health()).store_backend == "legacydict"
            assert await cache.dumps(str(tmp_path / "out.jsonl")) == 2
        assert not any(name in BATCH_METHODS for name in store.calls)

    run(scenario())
    with SemanticCache.loads(str(tmp_path / "out.jsonl"), str(tmp_path / "c.db"), table()) as c:
        assert c.stats().entries == 2
