"""SemanticCache's core lookups, run against every store through ``store_factory``.

Exact and semantic hits, the validator and confidence function, TTL, namespaces as
tenants, and counters that survive a reopen must behave the same on every backend.
The rest of SemanticCache is tested on the fast stores in ``tests/unit/test_cache.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from cache_helpers import E0, CacheMaker, Events, counters, entry_for, store_of, table
from conftest import FakeClock, StoreFactory
from mneme import Hit, SemanticCache
from mneme.testing import HashingEmbedder


@pytest.fixture
def backend_cache(store_factory: StoreFactory, clock: FakeClock) -> Iterator[CacheMaker]:
    """Build caches on the parametrised store."""
    yield from _cache_maker(store_factory, clock)


@pytest.fixture
def persistent_cache(
    persistent_store_factory: StoreFactory, clock: FakeClock
) -> Iterator[CacheMaker]:
    """Build caches on a store whose data outlives a handle: each call opens a new
    handle on the same backing data, so a second call is a reopen."""
    yield from _cache_maker(persistent_store_factory, clock)


def _cache_maker(store_factory: StoreFactory, clock: FakeClock) -> Iterator[CacheMaker]:
    made: list[SemanticCache] = []

    def make(embedder: Any = None, **kwargs: Any) -> SemanticCache:
        cache = SemanticCache(
            store=store_factory(),
            embedder=embedder if embedder is not None else table(),
            clock=clock,
            **kwargs,
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


# -- core lookups, on every store ---------------------------------------------------


def test_exact_hit_after_normalisation(backend_cache: CacheMaker, clock: FakeClock) -> None:
    events = Events()
    cache = backend_cache(HashingEmbedder(dim=64), metrics_hook=events)
    cache.put("hello world", "greeting", metadata={"k": [1, 2]})
    clock.advance(5)
    hit = cache.get("  HeLLo\t  World ")
    assert hit == Hit(
        response="greeting",
        similarity=1.0,
        confidence=1.0,
        age_seconds=5.0,
        layer="exact",
        namespace="default",
        metadata={"k": [1, 2]},
    )
    assert events.of("hit") == [
        {
            "namespace": "default",
            "layer": "exact",
            "similarity": 1.0,
            "confidence": 1.0,
            "age_seconds": 5.0,
        }
    ]
    stats = cache.stats()
    assert (stats.hits_exact, stats.hits_semantic, stats.misses) == (1, 0, 0)


def test_query_hash_and_original_query_stored(backend_cache: CacheMaker) -> None:
    cache = backend_cache(HashingEmbedder(dim=64))
    cache.put("  HeLLo\t  World ", "greeting")
    expected = hashlib.sha256(b"hello world").hexdigest()
    entry = store_of(cache).get_by_hash("default", expected)
    assert entry is not None
    assert entry.query_hash == expected
    assert entry.query == "  HeLLo\t  World "
    assert entry.response == "greeting"
    assert entry.access_count == 0
    vector = np.frombuffer(entry.embedding, dtype="<f4")
    assert vector.shape == (64,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(vector, HashingEmbedder(dim=64).embed("hello world"), atol=1e-6)


def test_semantic_hit_values(backend_cache: CacheMaker, clock: FakeClock) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c90", "ninety", metadata={"src": "x"})
    clock.advance(60)
    hit = cache.get("query")
    assert hit is not None
    assert hit.layer == "semantic"
    assert hit.response == "ninety"
    assert hit.similarity == pytest.approx(0.90, abs=1e-5)
    assert hit.age_seconds == 60.0
    assert hit.confidence == pytest.approx(hit.similarity * 0.5 ** (60 / 86400), rel=1e-9)
    assert hit.namespace == "default"
    assert hit.metadata == {"src": "x"}
    [fields] = events.of("hit")
    assert fields == {
        "namespace": "default",
        "layer": "semantic",
        "similarity": hit.similarity,
        "confidence": hit.confidence,
        "age_seconds": 60.0,
    }
    entry = entry_for(cache, "c90")
    assert entry.access_count == 1
    assert entry.last_accessed_at == int(clock.now)
    assert cache.stats().hits_semantic == 1


def test_below_threshold_is_a_miss(backend_cache: CacheMaker) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c50", "fifty")
    assert cache.get("query") is None
    assert events.miss_reasons() == ["below_threshold"]
    assert cache.stats().misses == 1
    assert cache.stats().entries == 1
    cache.set_similarity_threshold(0.4)
    assert cache.similarity_threshold == 0.4
    hit = cache.get("query", embedding=E0)
    # similarity 0.5 passes 0.4 but default confidence 0.5 < 0.7: skipped, kept.
    assert hit is None
    assert events.miss_reasons() == ["below_threshold", "no_match"]
    assert cache.stats().entries == 1


def test_top_three_only_and_invalid_candidates_deleted(backend_cache: CacheMaker) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c99", "[ERROR] a")
    cache.put("c98", "")
    cache.put("c97", "[LLM Error] b")
    cache.put("c96", "good")
    assert cache.get("query") is None
    assert events.miss_reasons() == ["no_match"]
    for text in ("c99", "c98", "c97"):
        assert entry_for(cache, text) is None
    assert cache.stats().entries == 1
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == "good"
    assert hit.similarity == pytest.approx(0.96, abs=1e-5)


def test_stop_at_first_below_threshold(backend_cache: CacheMaker) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c95", "")  # invalid: deleted
    cache.put("c50", "fifty")  # below the threshold: ends the walk
    assert cache.get("query") is None
    assert events.miss_reasons() == ["below_threshold"]
    assert entry_for(cache, "c95") is None
    assert entry_for(cache, "c50") is not None


def test_exact_layer_skips_validator_and_confidence(
    backend_cache: CacheMaker, clock: FakeClock
) -> None:
    cache = backend_cache(confidence_fn=lambda s, a, m: 0.0)
    cache.put("c90", "[ERROR] upstream")
    clock.advance(10 * 86400)
    hit = cache.get("c90")
    assert hit is not None
    assert (hit.layer, hit.response, hit.confidence) == ("exact", "[ERROR] upstream", 1.0)


def test_low_confidence_skipped_not_deleted(backend_cache: CacheMaker) -> None:
    seen: list[tuple[float, float, Any]] = []

    def confidence(similarity: float, age: float, metadata: Mapping[str, Any] | None) -> float:
        seen.append((similarity, age, metadata))
        return 0.69

    events = Events()
    cache = backend_cache(confidence_fn=confidence, metrics_hook=events)
    cache.put("c99", "a", metadata={"m": 1})
    cache.put("c98", "b")
    assert cache.get("query") is None
    assert events.miss_reasons() == ["no_match"]
    assert [round(s, 4) for s, _, _ in seen] == [0.99, 0.98]
    # An entry without metadata reaches the function as {}, as in 1.0.
    assert [(a, m) for _, a, m in seen] == [(0.0, {"m": 1}), (0.0, {})]
    assert cache.stats().entries == 2


def test_default_confidence_halves_per_day(backend_cache: CacheMaker, clock: FakeClock) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c90", "ninety")
    assert cache.get("query") is not None
    clock.advance(86400)
    # 0.9 * 0.5 = 0.45 < 0.7: skipped, not deleted.
    assert cache.get("query") is None
    assert events.miss_reasons() == ["no_match"]
    assert cache.stats().entries == 1


@pytest.mark.parametrize("response", ["", "   ", "\n\t", "[LLM Error] x", "[ERROR] x"])
def test_default_validator_rejects(backend_cache: CacheMaker, response: str) -> None:
    cache = backend_cache()
    cache.put("c95", response)
    assert cache.get("query") is None
    assert cache.stats().entries == 0


@pytest.mark.parametrize("response", ["ok", "x [ERROR]", " [LLM Error] later", "0"])
def test_default_validator_accepts(backend_cache: CacheMaker, response: str) -> None:
    cache = backend_cache()
    cache.put("c95", response)
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == response


def test_custom_validator(backend_cache: CacheMaker) -> None:
    cache = backend_cache(validator=lambda r: r.startswith("ok"))
    cache.put("c99", "nope")
    cache.put("c95", "ok fine")
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == "ok fine"
    assert entry_for(cache, "c99") is None


def test_exact_expiry_at_ttl(backend_cache: CacheMaker, clock: FakeClock) -> None:
    events = Events()
    cache = backend_cache(HashingEmbedder(dim=64), metrics_hook=events)
    cache.put("question", "answer", ttl=10)
    clock.advance(9)
    hit = cache.get("question")
    assert hit is not None
    assert (hit.layer, hit.age_seconds) == ("exact", 9.0)
    clock.advance(1)
    assert cache.get("question") is None
    assert events.of("expired") == [{"namespace": "default", "count": 1}]
    assert events.miss_reasons() == ["no_match"]
    assert cache.stats().expirations == 1
    assert cache.stats().entries == 0


def test_default_ttl_and_override(backend_cache: CacheMaker, clock: FakeClock) -> None:
    cache = backend_cache(HashingEmbedder(dim=64), default_ttl=5)
    cache.put("short lived", "a")
    cache.put("long lived", "b", ttl=100)
    assert entry_for(cache, "short lived").ttl == 5
    assert entry_for(cache, "long lived").ttl == 100
    clock.advance(5)
    assert cache.get("short lived") is None
    hit = cache.get("long lived")
    assert hit is not None
    assert hit.response == "b"


def test_no_ttl_never_expires(backend_cache: CacheMaker, clock: FakeClock) -> None:
    cache = backend_cache(HashingEmbedder(dim=64))
    cache.put("forever", "a")
    assert entry_for(cache, "forever").ttl is None
    clock.advance(10 * 365 * 86400)
    assert cache.get("forever") is not None
    assert cache.vacuum() == 0


def test_semantic_candidate_expired_skipped_and_deleted(
    backend_cache: CacheMaker, clock: FakeClock
) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c99", "old", ttl=10)
    cache.put("c95", "fresh")
    clock.advance(10)
    hit = cache.get("query")
    assert hit is not None
    assert hit.response == "fresh"
    if cache.health().index_backend == "pgvector":
        # A store that searches itself filters expiry in SQL: the expired row is never
        # a candidate, so it stays until vacuum removes and counts it.
        assert entry_for(cache, "c99") is not None
        assert events.of("expired") == []
        assert cache.vacuum() == 1
    assert entry_for(cache, "c99") is None
    assert events.of("expired") == [{"namespace": "default", "count": 1}]
    assert cache.stats().expirations == 1


def test_replace_resets_entry(backend_cache: CacheMaker, clock: FakeClock) -> None:
    cache = backend_cache(HashingEmbedder(dim=64))
    cache.put("same question", "first", ttl=150, metadata={"v": 1})
    start = int(clock.now)
    assert cache.get("same question") is not None
    assert entry_for(cache, "same question").access_count == 1
    old_id = entry_for(cache, "same question").id
    clock.advance(100)
    cache.put("SAME   question", "second", ttl=150)
    entry = entry_for(cache, "same question")
    assert cache.stats().entries == 1
    assert entry.id == old_id
    assert entry.response == "second"
    assert entry.query == "SAME   question"
    assert entry.metadata is None
    assert entry.created_at == start + 100
    assert entry.last_accessed_at == start + 100
    assert entry.access_count == 0
    clock.advance(100)  # 200 s after the first put, 100 after the second
    hit = cache.get("same question")
    assert hit is not None
    assert (hit.response, hit.age_seconds) == ("second", 100.0)


def test_tenant_isolation(backend_cache: CacheMaker) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events)
    cache.put("c99", "for a", namespace="a")
    assert cache.get("c99", namespace="b") is None  # exact
    assert cache.get("query", namespace="b") is None  # semantic
    assert events.miss_reasons() == ["no_match", "no_match"]
    hit = cache.get("query", namespace="a")
    assert hit is not None
    assert (hit.namespace, hit.response) == ("a", "for a")
    assert cache.stats(namespace="b").entries == 0
    assert cache.stats(namespace="b").misses == 2
    assert cache.stats(namespace="a").entries == 1
    assert cache.stats(namespace="a").misses == 0
    assert cache.stats(namespace="a").hits_semantic == 1
    assert cache.list_namespaces() == ["a"]
    assert cache.clear_namespace("b") == 0
    assert cache.stats(namespace="a").entries == 1
    assert cache.delete("c99", namespace="b") is False
    assert cache.delete("c99", namespace="a") is True


def test_zero_embedding_stored_never_served_semantically(backend_cache: CacheMaker) -> None:
    events = Events()
    cache = backend_cache(metrics_hook=events, similarity_threshold=-1.0)
    cache.put("zero", "nothing")
    assert cache.stats().entries == 1
    assert cache.get("query") is None
    assert cache.get("far") is None
    assert events.miss_reasons() == ["no_match", "no_match"]
    hit = cache.get("zero")  # exact still works
    assert hit is not None
    assert hit.layer == "exact"


def test_a_counter_flush_is_one_store_call(backend_cache: CacheMaker) -> None:
    """Counters of many namespaces are written together: one call (on Postgres one
    statement and one commit) instead of one per namespace."""
    cache = backend_cache()
    store: Any = store_of(cache)
    calls: list[str] = []
    for name in ("add_counters", "add_counters_many"):
        real = getattr(store, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)

        setattr(store, name, spy)
    for i in range(64):
        assert cache.get("far", namespace=f"t{i % 20}") is None
    assert calls == ["add_counters_many"]
    assert store.read_counters()["misses"] == 64
    assert store.read_counters("t3")["misses"] == 4
    assert store.read_counters("t19")["misses"] == 3


def test_counters_persist_across_reopen(persistent_cache: CacheMaker, clock: FakeClock) -> None:
    cache = persistent_cache(max_entries=2)
    cache.put("c99", "a", namespace="x")
    cache.put("c95", "b", namespace="x", ttl=10)
    cache.get("c99", namespace="x")  # exact
    cache.get("query", namespace="x")  # semantic
    cache.get("far", namespace="y")  # miss
    clock.advance(10)
    cache.get("c95", namespace="x")  # expired, then semantic hit on c99
    cache.put("c90", "c", namespace="x")
    cache.put("c50", "d", namespace="x")  # over max_entries: one eviction
    before = cache.stats()
    before_x = cache.stats(namespace="x")
    before_y = cache.stats(namespace="y")
    assert (before.hits_exact, before.hits_semantic, before.misses) == (1, 2, 1)
    assert (before.evictions, before.expirations) == (1, 1)
    assert (before_y.misses, before_y.hits_exact) == (1, 0)
    cache.close()
    again = persistent_cache(max_entries=2)
    assert counters(again.stats()) == counters(before)
    assert counters(again.stats(namespace="x")) == counters(before_x)
    assert counters(again.stats(namespace="y")) == counters(before_y)
